package main

// The child role of penstock bench ("_load"): the outside world, that is
// the DNS server, the receiving sink and the injecting clients.

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-mta/penstock/sim"
	"github.com/penstock-mta/penstock/smtpclient"
)

func benchDomain(i int) string { return "d" + strconv.Itoa(i) + ".bench.test" }
func benchMX(i int) string     { return "mx" + strconv.Itoa(i) + ".sink.bench.test" }

// benchBody builds message i: headers, then lines of text up to size bytes.
func benchBody(i int, to string, size int, filler []byte) []byte {
	b := make([]byte, 0, size+2)
	b = fmt.Appendf(b, "From: Bench <%s>\r\nTo: <%s>\r\nSubject: penstock bench %d\r\nMessage-ID: <%d.bench@sender.bench.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n",
		benchSender, to, i, i)
	for len(b) < size-2 {
		n := min(len(filler), size-2-len(b))
		b = append(b, filler[:n]...)
		if b[len(b)-1] != '\n' {
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func benchLoadChild(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench _load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 20000, "")
	size := fs.Int("size", 2048, "")
	clients := fs.Int("clients", 20, "")
	domains := fs.Int("domains", 1, "")
	load := fs.String("load", "uniform", "")
	sinkAddr := fs.String("sink", "", "")
	sinkSessions := fs.Int("sink-sessions", 0, "")
	if fs.Parse(args) != nil {
		return 2
	}
	out := json.NewEncoder(stdout)
	failReady := func(err error) int {
		out.Encode(loadReady{Error: err.Error()})
		return 1
	}
	world, err := sim.NewWorld()
	if err != nil {
		return failReady(err)
	}
	defer world.Close()
	var sink *sim.Provider
	port := world.Port
	sinkIP := ""
	if *sinkAddr == "" {
		sink, err = world.AddProvider(sim.Behavior{Name: "sink", MaxSessions: *sinkSessions}, []string{benchDomain(0)}, benchMX(0))
		if err != nil {
			return failReady(err)
		}
		sinkIP, _, _ = net.SplitHostPort(sink.Addrs()[0])
	} else {
		host, p, _ := net.SplitHostPort(*sinkAddr)
		sinkIP = host
		port, _ = strconv.Atoi(p)
	}
	// Every domain has its own MX host name (its own site in Penstock),
	// all of them on the one sink address.
	for i := range *domains {
		world.DNS.SetA(benchMX(i), sinkIP)
		world.DNS.SetMX(benchDomain(i), sim.MXRecord{Host: benchMX(i), Pref: 10})
	}
	spread, err := benchSpread(*load, *n, *domains)
	if err != nil {
		return failReady(err)
	}
	if err := out.Encode(loadReady{DNS: world.Nameserver(), Port: port}); err != nil {
		return 1
	}

	in := bufio.NewScanner(stdin)
	if !in.Scan() {
		return 0 // the parent gave up before starting
	}
	var cmd loadGo
	if err := json.Unmarshal(in.Bytes(), &cmd); err != nil {
		fmt.Fprintln(stderr, "bench child:", err)
		return 1
	}
	cpu0 := cpuSelf()
	res := benchInject(cmd.Addr, *size, *clients, spread)
	if sink != nil {
		// The parent's -timeout bounds the whole run; this bounds the child
		// on its own, should the parent vanish.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		werr := sink.WaitMessages(ctx, res.Injected)
		cancel()
		if werr != nil {
			res.SinkWaitError = werr.Error()
		}
		st := sink.Stats()
		res.SinkCounted = st.Delivered
		res.SinkMaxConns = st.MaxOpen
		res.SinkConns = st.Connections
		res.SinkWaited = st.Waited
		res.SinkChunked = st.Chunked
		res.SinkMaxPerCon = st.MaxMsgsPerConn
		if len(st.Arrivals) > 0 {
			res.SinkFirst = slices.MinFunc(st.Arrivals, time.Time.Compare).UnixNano()
			res.SinkLast = slices.MaxFunc(st.Arrivals, time.Time.Compare).UnixNano()
		}
	}
	res.CPUNs = int64(cpuSelf() - cpu0)
	if err := out.Encode(res); err != nil {
		return 1
	}
	// Stay up (the sink keeps answering) until the parent closes stdin,
	// at most 30 minutes.
	eof := make(chan struct{})
	go func() {
		for in.Scan() {
		}
		close(eof)
	}()
	select {
	case <-eof:
	case <-time.After(30 * time.Minute):
	}
	return 0
}

// benchInject sends a message for each entry of spread to addr over c
// sessions, each reusing its connection; message i goes to
// user<i>@d<spread[i]>.
func benchInject(addr string, size, c int, spread []int) loadResult {
	n := len(spread)
	filler := []byte(strings.Repeat("Penstock meters mail like water to a turbine, gate by gate. ", 2)[:76] + "\r\n")
	lat := make([]time.Duration, n)
	var next, injected, errs atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for range c {
		wg.Go(func() {
			var cl *smtpclient.Client
			defer func() {
				if cl != nil {
					qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
					cl.Quit(qctx)
					qcancel()
				}
			}()
			for tries := 0; tries < n+c; tries++ {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				to := "user" + strconv.Itoa(i) + "@" + benchDomain(spread[i])
				body := benchBody(i, to, size, filler)
				if cl == nil || cl.Broken() {
					var err error
					// DATA, as most applications (and compare.sh's smtp-source
					// into Postfix) inject; BDAT is for the outbound side.
					opts := smtpclient.Options{EHLO: "injector.bench.test", TLS: smtpclient.TLSDisabled, NoChunking: true}
					if cl, err = smtpclient.Dial(ctx, addr, opts); err != nil {
						cl = nil
						fail(err)
						continue
					}
				}
				t0 := time.Now()
				if _, err := cl.Send(ctx, benchSender, []string{to}, body); err != nil {
					fail(err)
					continue
				}
				lat[i] = time.Since(t0)
				injected.Add(1)
			}
		})
	}
	wg.Wait()
	end := time.Now()
	ok := make([]time.Duration, 0, n)
	for _, d := range lat {
		if d > 0 {
			ok = append(ok, d)
		}
	}
	slices.Sort(ok)
	r := loadResult{InjectStart: start.UnixNano(), InjectEnd: end.UnixNano(), Injected: injected.Load(), Errors: errs.Load(),
		AckP50Ms: percentile(ok, 50), AckP99Ms: percentile(ok, 99)}
	if e, ok := firstErr.Load().(string); ok {
		r.FirstError = e
	}
	return r
}
