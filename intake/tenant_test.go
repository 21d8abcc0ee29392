package intake

import "testing"

func TestTakeTenant(t *testing.T) {
	for _, tc := range []struct {
		name, in, tenant, out string
	}{
		{"none", "From: a@x\r\nSubject: hi\r\n\r\nX-Penstock-Tenant: body\r\n", "", "From: a@x\r\nSubject: hi\r\n\r\nX-Penstock-Tenant: body\r\n"},
		{"one", "From: a@x\r\nX-Penstock-Tenant: acme\r\nSubject: hi\r\n\r\nbody\r\n", "acme", "From: a@x\r\nSubject: hi\r\n\r\nbody\r\n"},
		{"case and space", "x-penstock-TENANT:   acme  \r\nFrom: a@x\r\n\r\nb", "acme", "From: a@x\r\n\r\nb"},
		{"folded", "From: a@x\r\nX-Penstock-Tenant:\r\n acme\r\nTo: b@y\r\n\r\nb", "acme", "From: a@x\r\nTo: b@y\r\n\r\nb"},
		{"two: the last wins, both go", "X-Penstock-Tenant: a\r\nFrom: a@x\r\nX-Penstock-Tenant: b\r\n\r\nb", "b", "From: a@x\r\n\r\nb"},
		{"bare LF", "From: a@x\nX-Penstock-Tenant: acme\n\nbody\n", "acme", "From: a@x\n\nbody\n"},
		{"last line of a header-only message", "From: a@x\r\nX-Penstock-Tenant: acme", "acme", "From: a@x\r\n"},
		{"a longer name is another field", "X-Penstock-Tenant-Id: 7\r\n\r\n", "", "X-Penstock-Tenant-Id: 7\r\n\r\n"},
	} {
		tenant, out := takeTenant([]byte(tc.in))
		if tenant != tc.tenant || string(out) != tc.out {
			t.Errorf("%s: got %q, %q; want %q, %q", tc.name, tenant, out, tc.tenant, tc.out)
		}
	}
}
