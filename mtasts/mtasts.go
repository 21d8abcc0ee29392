// Package mtasts implements MTA-STS (RFC 8461) for outbound delivery: it
// finds a recipient domain's policy, fetches and parses it, keeps it in a
// cache persisted in the spool's KV store, and hands it to the queue as a
// tlspolicy.Policy.
//
// Algorithm (RFC 8461 §3 and §5.1). For a domain, Policy looks up the TXT
// record at _mta-sts.<domain> through Penstock's resolver and reads its id.
// If a cached policy has the same id and is not near expiry, it applies.
// Otherwise the policy file is fetched from
// https://mta-sts.<domain>/.well-known/mta-sts.txt: the host is resolved
// through the same resolver, the certificate verified against the system
// roots for that name (§3.3), redirects refused, the body limited to 64 KiB
// and the whole fetch to a time limit. A fetched policy replaces the cached
// one and is stored durably (bucket "mta-sts"), valid for its max_age. A
// cached policy is refreshed when the TXT id changes and, proactively, when
// less than a quarter of its max_age (at most a day) is left. When the TXT
// record is missing or invalid, or the policy host is down or serves
// garbage, an unexpired cached policy still applies; with none cached the
// domain has no policy (§3.3, §5.1); a failed fetch is not retried for 5
// minutes unless the id changes. Every failure to get a policy is told
// to the Reporter (sts-policy-fetch-error, sts-policy-invalid,
// sts-webpki-invalid) and logged.
//
// The package never dials an MX host and never decides delivery: the queue
// applies the returned policy (mx patterns, mode) when it connects.
package mtasts

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/penstock-mta/penstock/dns"
	"github.com/penstock-mta/penstock/spool"
	"github.com/penstock-mta/penstock/tlspolicy"
)

// Bucket is the spool KV bucket of the policy cache.
const Bucket = "mta-sts"

// DefaultFetchTimeout bounds one policy fetch, connection to last byte.
const DefaultFetchTimeout = 20 * time.Second

// failedFetchWait: after a failed fetch, a domain's policy host is not asked
// again for this long (the cached policy, or none, applies meanwhile), so a
// dead policy host does not delay each MX refresh by a fetch timeout.
const failedFetchWait = 5 * time.Minute

// Options configure a Resolver.
type Options struct {
	DNS dns.Resolver // required: TXT records and the policy host's addresses
	KV  spool.KV     // the persisted cache; nil keeps it in memory only
	// Port is the HTTPS port of policy hosts: 0 means 443. Only tests set it.
	Port int
	// RootCAs verifies policy hosts; nil means the system roots (which
	// honour SSL_CERT_FILE). Tests normally use SSL_CERT_FILE instead.
	RootCAs      *x509.CertPool
	FetchTimeout time.Duration // 0: DefaultFetchTimeout
	Reporter     tlspolicy.Reporter
	Logger       *slog.Logger
	Now          func() time.Time
}

// Resolver finds MTA-STS policies. It is safe for concurrent use.
type Resolver struct {
	opts   Options
	client *http.Client

	mu     sync.Mutex
	cache  map[string]*entry // by domain
	failed map[string]failure
	flight map[string]chan struct{}
}

// entry is one cached policy, as stored in the KV.
type failure struct {
	at  time.Time
	id  string
	err string
}

type entry struct {
	ID      string    `json:"id"`
	Policy  Policy    `json:"policy"`
	Fetched time.Time `json:"fetched"`
	Expires time.Time `json:"expires"`
}

// New returns a Resolver, loading the persisted cache from opts.KV.
func New(opts Options) (*Resolver, error) {
	if opts.DNS == nil {
		return nil, errors.New("mtasts: no DNS resolver")
	}
	if opts.Port == 0 {
		opts.Port = 443
	}
	if opts.FetchTimeout <= 0 {
		opts.FetchTimeout = DefaultFetchTimeout
	}
	if opts.Reporter == nil {
		opts.Reporter = tlspolicy.Nop{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &Resolver{opts: opts, cache: map[string]*entry{}, failed: map[string]failure{}, flight: map[string]chan struct{}{}}
	r.client = &http.Client{
		Timeout: opts.FetchTimeout,
		Transport: &http.Transport{
			DialContext:            r.dial,
			TLSClientConfig:        &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:    opts.FetchTimeout,
			ResponseHeaderTimeout:  opts.FetchTimeout,
			MaxResponseHeaderBytes: 16 << 10,
			DisableKeepAlives:      true,
			Proxy:                  nil, // the policy host is reached directly, never through a proxy
		},
		// RFC 8461 §3.3: "HTTP 3xx redirects MUST NOT be followed".
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirect refused (RFC 8461 §3.3)")
		},
	}
	if opts.KV != nil {
		now := opts.Now()
		err := opts.KV.ForEach("", func(key string, val []byte) error {
			var e entry
			if err := json.Unmarshal(val, &e); err != nil || !now.Before(e.Expires) {
				// Unreadable or expired: forget it rather than fail to start.
				return opts.KV.Delete(key)
			}
			r.cache[key] = &e
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("mtasts: loading the policy cache: %w", err)
		}
	}
	return r, nil
}

// dial connects to the policy host, resolved through Penstock's resolver
// (not the system's), trying each address in turn.
func (r *Resolver) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := r.opts.DNS.LookupIP(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var last error
	for _, ip := range ips {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// Policy implements tlspolicy.Provider.
func (r *Resolver) Policy(ctx context.Context, domain string) tlspolicy.Policy {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	// One discovery per domain at a time: concurrent callers wait for it
	// and then read the cache.
	for {
		r.mu.Lock()
		ch, busy := r.flight[domain]
		if !busy {
			ch = make(chan struct{})
			r.flight[domain] = ch
			r.mu.Unlock()
			break
		}
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.fromCache(domain, "MTA-STS discovery cancelled: "+ctx.Err().Error())
		}
	}
	defer func() {
		r.mu.Lock()
		close(r.flight[domain])
		delete(r.flight, domain)
		r.mu.Unlock()
	}()
	return r.discover(ctx, domain)
}

func (r *Resolver) discover(ctx context.Context, domain string) tlspolicy.Policy {
	now := r.opts.Now()
	txt, err := r.opts.DNS.LookupTXT(ctx, "_mta-sts."+domain)
	var id string
	if err == nil {
		id, err = ParseTXT(txt)
		if err != nil {
			r.opts.Logger.Info("MTA-STS TXT record invalid", "domain", domain, "err", err)
		}
	}
	if err != nil {
		// No (valid) TXT record: a cached policy still applies until it
		// expires (RFC 8461 §5.1); without one there is no policy.
		return r.fromCache(domain, "no valid _mta-sts TXT record: "+err.Error())
	}
	r.mu.Lock()
	e := r.cache[domain]
	f, recent := r.failed[domain]
	r.mu.Unlock()
	if e != nil && e.ID == id && now.Before(e.Expires) && !r.refreshDue(e, now) {
		return toPolicy(domain, e, "cached policy")
	}
	if recent && f.id == id && now.Sub(f.at) < failedFetchWait {
		return r.fromCache(domain, "policy fetch failed at "+f.at.UTC().Format(time.RFC3339)+": "+f.err)
	}
	p, result, err := r.fetch(ctx, domain)
	if err != nil {
		r.opts.Logger.Warn("MTA-STS policy fetch failed", "domain", domain, "err", err)
		r.opts.Reporter.Report(tlspolicy.Outcome{Domain: domain, PolicyType: tlspolicy.SourceSTS,
			Result: result, Detail: err.Error()})
		r.mu.Lock()
		r.failed[domain] = failure{at: now, id: id, err: err.Error()}
		r.mu.Unlock()
		return r.fromCache(domain, "policy fetch failed: "+err.Error())
	}
	r.mu.Lock()
	delete(r.failed, domain)
	r.mu.Unlock()
	e = &entry{ID: id, Policy: p, Fetched: now, Expires: now.Add(time.Duration(p.MaxAge) * time.Second)}
	r.store(domain, e)
	return toPolicy(domain, e, "policy fetched")
}

// refreshDue: refresh before expiry, when less than a quarter of max_age
// (at most a day) is left, so a policy in use never lapses (RFC 8461 §5.1
// suggests refreshing periodically).
func (r *Resolver) refreshDue(e *entry, now time.Time) bool {
	margin := min(e.Expires.Sub(e.Fetched)/4, 24*time.Hour)
	return e.Expires.Sub(now) < margin
}

// fromCache returns the unexpired cached policy of domain, or no policy.
func (r *Resolver) fromCache(domain, why string) tlspolicy.Policy {
	now := r.opts.Now()
	r.mu.Lock()
	e := r.cache[domain]
	r.mu.Unlock()
	if e != nil && now.Before(e.Expires) {
		return toPolicy(domain, e, "cached policy applies ("+why+")")
	}
	return tlspolicy.Policy{Domain: domain, Source: tlspolicy.SourceNone, Mode: tlspolicy.ModeNone, Note: why}
}

func (r *Resolver) store(domain string, e *entry) {
	r.mu.Lock()
	r.cache[domain] = e
	r.mu.Unlock()
	if r.opts.KV == nil {
		return
	}
	b, err := json.Marshal(e)
	if err == nil {
		err = r.opts.KV.Put(domain, b)
	}
	if err != nil {
		r.opts.Logger.Error("MTA-STS policy not persisted", "domain", domain, "err", err)
	}
}

func toPolicy(domain string, e *entry, note string) tlspolicy.Policy {
	return tlspolicy.Policy{Domain: domain, Source: tlspolicy.SourceSTS, Mode: e.Policy.Mode,
		MX: e.Policy.MX, ID: e.ID, Expires: e.Expires, Note: note}
}

// fetch gets and parses the policy file of domain (RFC 8461 §3.3). On
// failure it returns the RFC 8460 result type that describes it.
func (r *Resolver) fetch(ctx context.Context, domain string) (Policy, string, error) {
	host := "mta-sts." + domain
	u := "https://" + net.JoinHostPort(host, strconv.Itoa(r.opts.Port)) + "/.well-known/mta-sts.txt"
	if r.opts.Port == 443 {
		u = "https://" + host + "/.well-known/mta-sts.txt"
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Policy{}, tlspolicy.ResultSTSPolicyFetchError, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var ve *tls.CertificateVerificationError
		var he x509.HostnameError
		if errors.As(err, &ve) || errors.As(err, &he) {
			return Policy{}, tlspolicy.ResultSTSWebPKIInvalid, fmt.Errorf("%s: certificate not valid: %w", host, err)
		}
		return Policy{}, tlspolicy.ResultSTSPolicyFetchError, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Policy{}, tlspolicy.ResultSTSPolicyFetchError, fmt.Errorf("fetching %s: HTTP status %s (need 200; redirects are not followed)", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return Policy{}, tlspolicy.ResultSTSPolicyFetchError, fmt.Errorf("reading %s: %w", u, err)
	}
	if len(body) > MaxPolicySize {
		return Policy{}, tlspolicy.ResultSTSPolicyInvalid, fmt.Errorf("%s: policy larger than %d bytes", u, MaxPolicySize)
	}
	p, err := ParsePolicy(body)
	if err != nil {
		return Policy{}, tlspolicy.ResultSTSPolicyInvalid, fmt.Errorf("%s: %w", u, err)
	}
	return p, "", nil
}
