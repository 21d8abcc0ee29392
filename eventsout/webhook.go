package eventsout

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-mta/penstock/config"
)

// SignatureHeader carries the webhook signature: "t=<unix seconds>,v1=<hex
// HMAC-SHA256 over "<t>.<body>" keyed with the secret>". The time lets the
// receiver refuse replays of old requests.
const SignatureHeader = "X-Penstock-Signature"

// Webhook POSTs batches of events as a JSON array to a URL.
type Webhook struct {
	cfg    config.Webhook
	client *http.Client
}

// NewWebhook returns the Sender for w; roots verifies https servers (nil =
// the system's roots).
func NewWebhook(w config.Webhook, roots *x509.CertPool) *Webhook {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConfig(roots)
	tr.Proxy = nil
	return &Webhook{cfg: w, client: &http.Client{Transport: tr, Timeout: time.Duration(w.Timeout)}}
}

// Sign returns the SignatureHeader value for body at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Send POSTs evs; only a 2xx reply counts as taken.
func (w *Webhook) Send(ctx context.Context, evs []Event) error {
	var body bytes.Buffer
	body.WriteByte('[')
	for i, e := range evs {
		if i > 0 {
			body.WriteByte(',')
		}
		body.Write(e.JSON)
	}
	body.WriteByte(']')
	code, reply, err := w.post(ctx, body.Bytes())
	if err != nil {
		return err
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("webhook %s: HTTP %d: %s", w.cfg.Name, code, reply)
	}
	return nil
}

func (w *Webhook) post(ctx context.Context, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return 0, "", fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "penstock-webhook")
	if w.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign(w.cfg.Secret, time.Now(), body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("webhook %s: %w", w.cfg.Name, err)
	}
	defer resp.Body.Close()
	// The reply is read only to report it: a receiver's garbage never
	// reaches further than an error text.
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, strings.ToValidUTF8(strings.TrimSpace(string(b)), "?"), nil
}

// Test POSTs one event of type "Test" and returns the receiver's status
// code and the start of its reply.
func (w *Webhook) Test(ctx context.Context) (int, string, error) {
	now := time.Now().UTC()
	ev := fmt.Sprintf(`[{"event_id":"test-%d","type":"Test","time":%q,"detail":"penstock webhook test"}]`,
		now.UnixNano(), now.Format(time.RFC3339Nano))
	return w.post(ctx, []byte(ev))
}

// Close releases idle connections.
func (w *Webhook) Close() error {
	w.client.CloseIdleConnections()
	return nil
}
