package quota

import "testing"

func TestKeyRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		k    Key
		want string
	}{
		{RuleKey("yahoo"), "conn|rule|yahoo"},
		{RuleKey("odd|name"), "conn|rule|odd|name"},
		{SourceKey("gmail", "alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com", "192.0.2.10"),
			"conn|src|gmail|alt1.gmail-smtp-in.l.google.com,gmail-smtp-in.l.google.com|192.0.2.10"},
		{SourceKey("a|b", "mx.example.com", ""), "conn|src|a|b|mx.example.com|"},
		{PathKey("default", "2001:db8::1", "192.0.2.25").Rate(), "rate|path|default|2001:db8::1|192.0.2.25"},
		{PathKey("default", "", "none"), "conn|path|default||none"},
		{CapKey("ip1 total"), "conn|cap|ip1 total"},
		{CapKey("group").Rate(), "rate|cap|group"},
		{CapKey("group").Opens(), "open|cap|group"},
	} {
		if got := tc.k.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
		back, err := ParseKey(tc.want)
		if err != nil {
			t.Fatalf("ParseKey(%q): %v", tc.want, err)
		}
		if back != tc.k {
			t.Errorf("ParseKey(%q) = %#v, want %#v", tc.want, back, tc.k)
		}
	}
	for _, bad := range []string{"", "conn", "conn|", "lease|rule|x", "conn|site|x", "conn|src|x|y", "conn|path|x", "conn|rule|"} {
		if k, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) = %#v, want an error", bad, k)
		}
	}
}

func TestKeyAccessorsAndGoverns(t *testing.T) {
	k := SourceKey("gmail", "mx.g", "192.0.2.10").Rate()
	if k.Kind() != KindRate || k.Scope() != ScopeSource || k.Rule() != "gmail" || k.Site() != "mx.g" || k.Source() != "192.0.2.10" || k.MX() != "" {
		t.Errorf("accessors: %#v", k)
	}
	if !k.Governs("gmail", "mx.g") || k.Governs("gmail", "mx.other") || k.Governs("yahoo", "mx.g") {
		t.Error("Governs: a source key belongs to its rule and site only")
	}
	if !RuleKey("gmail").Governs("gmail", "any") || !PathKey("gmail", "s", "m").Governs("gmail", "any") {
		t.Error("Governs: rule and path keys belong to their rule at every site")
	}
	if CapKey("gmail").Governs("gmail", "any") {
		t.Error("Governs: a cap's key belongs to no rule, even one of the same name")
	}
	if !(Key{}).IsZero() || k.IsZero() {
		t.Error("IsZero")
	}
}

func TestLeaseKeyLayout(t *testing.T) {
	k := SourceKey("gmail", "mx.g", "192.0.2.10")
	got, err := LeaseKey("penstock:", "penstock:lease:"+k.String())
	if err != nil || got != k {
		t.Fatalf("LeaseKey = %#v, %v", got, err)
	}
	if _, err := LeaseKey("penstock:", "penstock:tat:"+k.String()); err == nil {
		t.Error("a rate key read as a lease set")
	}
	if LeasePattern("penstock:") != "penstock:lease:*" {
		t.Error("LeasePattern")
	}
	if LeaseNode("mta-a#x1-2") != "mta-a" || LeaseNode("a#b#c") != "a#b" {
		t.Error("LeaseNode")
	}
	// The layout the Redis store writes is the one these read back.
	r := &Redis{opts: RedisOptions{Prefix: "penstock:", Node: "mta-a"}}
	if got, err := LeaseKey("penstock:", r.k("lease", k.String())); err != nil || got != k {
		t.Errorf("Redis lease key %q not read back: %v", r.k("lease", k.String()), err)
	}
	if n := LeaseNode(r.newLease(k.String()).member); n != "mta-a" {
		t.Errorf("Redis lease member read back as node %q", n)
	}
}
