package eventsout

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/penstock-mta/penstock/config"
)

const pgBase = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// pgSchema makes a schema name unique to this test run and drops it after.
func pgSchema(t *testing.T) (schema string, admin *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, pgBase)
	if err != nil {
		t.Fatalf("PostgreSQL on 127.0.0.1:5432 (started by .ci/run): %v", err)
	}
	schema = fmt.Sprintf("penstock_t%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		admin.Close(ctx)
	})
	return schema, admin
}

func pgCount(t *testing.T, admin *pgx.Conn, q string) int {
	t.Helper()
	var n int
	if err := admin.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// Events reach the table; a connection killed mid-run (pg_terminate_backend)
// is made again and nothing is lost or doubled; a re-sent batch inserts
// nothing; the migrations run once.
func TestPostgresKilledConnection(t *testing.T) {
	schema, admin := pgSchema(t)
	app := schema + "_out"
	e := newEnv(t, nil)
	e.cfg.Postgres.DSN = pgBase + "&application_name=" + app
	e.cfg.Postgres.Schema = schema
	e.cfg.Postgres.BatchSize = 7
	m := e.manager(Options{})
	e.write(30)
	count := func() int { // -1 until the output has made the table
		n := -1
		admin.QueryRow(context.Background(), "SELECT count(*) FROM "+schema+".events").Scan(&n)
		return n
	}
	waitFor(t, 10*time.Second, "30 rows", func() bool { return count() == 30 })

	if n := pgCount(t, admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = '"+app+"'"); n != 1 {
		t.Fatalf("%d backends for the output, want 1", n)
	}
	if _, err := admin.Exec(context.Background(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", app); err != nil {
		t.Fatal(err)
	}
	e.write(30)
	waitFor(t, 15*time.Second, "60 rows", func() bool { return count() == 60 })
	if st := m.Status()[0]; st.Failures == 0 {
		t.Errorf("the killed connection was not noticed: %+v", st)
	}
	var distinct int
	admin.QueryRow(context.Background(), "SELECT count(DISTINCT recipient) FROM "+schema+".events").Scan(&distinct)
	if distinct != 60 {
		t.Errorf("%d distinct recipients, want 60", distinct)
	}

	// At-least-once: the same batch again inserts nothing.
	evs, _, _, _, err := m.tail.Read(Cursor{}, 10)
	if err != nil || len(evs) != 10 {
		t.Fatalf("read: %d %v", len(evs), err)
	}
	pg := newPostgres(e.cfg.Postgres)
	defer pg.Close()
	if err := pg.Send(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 60 {
		t.Errorf("%d rows after a re-sent batch, want 60", n)
	}
	if n := pgCount(t, admin, "SELECT count(*) FROM "+schema+".schema_version"); n != 1 {
		t.Errorf("schema_version has %d rows, want 1", n)
	}
	// The README's query for one recipient works on what was written.
	var typ, reason string
	err = admin.QueryRow(context.Background(), "SELECT type, reason FROM "+schema+
		".events WHERE lower(recipient) = lower($1) ORDER BY time DESC LIMIT 1", "R1@example.com").Scan(&typ, &reason)
	if err != nil || typ != "Bounce" || reason != "bad-mailbox" {
		t.Errorf("recipient query: %s %s %v", typ, reason, err)
	}
	// Every SQL example of the README runs against the table.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(readme), "```sql\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		for _, q := range strings.Split(block, ";\n") {
			if strings.TrimSpace(q) == "" {
				continue
			}
			n++
			rows, err := admin.Query(context.Background(), strings.ReplaceAll(q, "penstock.events", schema+".events"))
			if err == nil {
				for rows.Next() {
				}
				rows.Close()
				err = rows.Err()
			}
			if err != nil {
				t.Errorf("README query fails: %v\n%s", err, q)
			}
		}
	}
	if n < 3 {
		t.Errorf("found %d SQL examples in the README, want 3", n)
	}
}

// A database down at start delays the output, never delivery, and fails
// loudly in the status.
func TestPostgresDown(t *testing.T) {
	e := newEnv(t, nil)
	e.cfg.Postgres.DSN = "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=1"
	e.cfg.Postgres.Schema = "penstock"
	m := e.manager(Options{})
	e.write(3)
	waitFor(t, 10*time.Second, "a failure", func() bool { return m.Status()[0].Failures > 0 })
	if st := m.Status()[0]; st.Lag != 3 || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
}

// A batch that overlaps rows already written (sent again after a crash,
// cut at another place) is written through the merge: every event once.
// A fresh batch goes straight in.
func TestPostgresOverlappingBatch(t *testing.T) {
	schema, admin := pgSchema(t)
	p := newPostgres(config.Postgres{DSN: pgBase, Schema: schema, BatchSize: 100}).(*Postgres)
	defer p.Close()
	var evs []Event
	for i := range 12 {
		ev, ok := makeEvent(fmt.Sprintf("k-%d", 100*i),
			[]byte(fmt.Sprintf(`{"type":"Delivery","time":"2026-12-07T05:00:00Z","id":"m%d","recipient":"r%d@example.com"}`, i, i)))
		if !ok {
			t.Fatal("makeEvent refused a record")
		}
		evs = append(evs, ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, b := range [][2]int{{0, 5}, {3, 10}, {10, 12}} {
		if err := p.Send(ctx, evs[b[0]:b[1]]); err != nil {
			t.Fatalf("batch %v: %v", b, err)
		}
	}
	if p.merged != 1 {
		t.Errorf("%d batches merged, want 1 (the overlapping one)", p.merged)
	}
	if n := pgCount(t, admin, "SELECT count(*) FROM "+schema+".events"); n != len(evs) {
		t.Fatalf("%d rows, want %d", n, len(evs))
	}
	for _, ev := range evs {
		if n := pgCount(t, admin, "SELECT count(*) FROM "+schema+".events WHERE event_id = '"+ev.ID+"'"); n != 1 {
			t.Fatalf("event %s: %d rows", ev.ID, n)
		}
	}
}
