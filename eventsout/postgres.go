package eventsout

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/penstock-mta/penstock/config"
	"github.com/penstock-mta/penstock/events"
)

// migrations are applied in name order, each once, recorded in
// <schema>.schema_version; a file's number is its version.
//
//go:embed migrations/*.sql
var migrations embed.FS

// pgColumns returns the events table's columns, in COPY order.
func pgColumns() []string {
	return []string{"event_id", "type", "time", "message_id", "delivery_id", "sender", "recipient",
		"site", "mx_host", "mx_ip", "source_ip", "rule", "code", "enhanced_code", "text", "reason", "class",
		"attempt", "status", "detail", "state", "size", "tls"}
}

// Postgres writes events into <schema>.events, one transaction a batch:
// COPY into the table; when the batch was partly written before (the
// primary key refuses it), COPY into a temporary table and INSERT ... ON
// CONFLICT (event_id) DO NOTHING.
type Postgres struct {
	cfg config.Postgres
	// merged counts the batches that took the temporary table's road.
	merged int

	mu   sync.Mutex // one batch at a time on the one connection
	conn *pgx.Conn  // nil until connected, and after an error
}

func newPostgres(cfg config.Postgres) Sender { return &Postgres{cfg: cfg} }

// connect opens the connection and brings the schema up to date.
func (p *Postgres) connect(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, p.cfg.DSN)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if err := migrate(ctx, conn, p.cfg.Schema); err != nil {
		conn.Close(ctx)
		return err
	}
	p.conn = conn
	return nil
}

// migrate applies the migrations not yet recorded, under an advisory lock
// so that several nodes starting at once apply each one once.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	s := pgx.Identifier{schema}.Sanitize()
	steps := []string{
		"SELECT pg_advisory_xact_lock(hashtext('penstock-migrate-' || " + quoteLiteral(schema) + "))",
		"CREATE SCHEMA IF NOT EXISTS " + s,
		"SET LOCAL search_path TO " + s,
		"CREATE TABLE IF NOT EXISTS schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
	}
	for _, q := range steps {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres: migrate: %w", err)
		}
	}
	var have int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&have); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	names, _ := fs.Glob(migrations, "migrations/*.sql")
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		v, err := strconv.Atoi(base[:strings.IndexByte(base, '_')])
		if err != nil {
			return fmt.Errorf("postgres: migration %s: bad name", name)
		}
		if v <= have {
			continue
		}
		sql, _ := migrations.ReadFile(name)
		if _, err := tx.Exec(ctx, string(sql)); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", base, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", v); err != nil {
			return fmt.Errorf("postgres: migration %s: %w", base, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Send writes evs in one transaction; a broken connection is dropped and
// made again at the next try.
func (p *Postgres) Send(ctx context.Context, evs []Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == nil || p.conn.IsClosed() {
		if err := p.connect(ctx); err != nil {
			return err
		}
	}
	err := p.write(ctx, evs)
	if err != nil {
		p.conn.Close(context.Background())
		p.conn = nil
	}
	return err
}

func (p *Postgres) write(ctx context.Context, evs []Event) error {
	rows := make([][]any, 0, len(evs))
	for _, e := range evs {
		var r events.Record
		if err := e.record(&r); err != nil {
			continue // Read only passes JSON objects; a field of the wrong type is not worth a stall
		}
		rows = append(rows, []any{e.ID, string(r.Type), r.Time, r.ID, r.DeliveryID, r.Sender, r.Recipient,
			r.Site, r.MXHost, r.MXIP, r.SourceIP, r.Rule, r.Code, r.EnhancedCode, r.Text, r.Reason, r.Class,
			r.Attempt, r.Status, r.Detail, r.State, r.Size, r.TLS})
	}
	// The usual batch is new to the table and goes straight in by COPY.
	// A batch sent again (after a crash, or a commit whose answer was
	// lost) meets its own rows on the primary key and is refused whole;
	// it then goes through a temporary table, skipping the rows there.
	err := p.copyIn(ctx, rows)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
		p.merged++
		err = p.merge(ctx, rows)
	}
	return err
}

// uniqueViolation is PostgreSQL's SQLSTATE for a duplicate key.
const uniqueViolation = "23505"

func (p *Postgres) copyIn(ctx context.Context, rows [][]any) error {
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{p.cfg.Schema, "events"}, pgColumns(), pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("postgres: copy: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// merge writes rows of which some may be in the table already.
func (p *Postgres) merge(ctx context.Context, rows [][]any) error {
	s := pgx.Identifier{p.cfg.Schema}.Sanitize()
	tx, err := p.conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE IF NOT EXISTS events_in (LIKE "+s+".events) ON COMMIT DELETE ROWS"); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"events_in"}, pgColumns(), pgx.CopyFromRows(rows)); err != nil {
		return fmt.Errorf("postgres: copy: %w", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s+".events SELECT * FROM events_in ON CONFLICT (event_id) DO NOTHING"); err != nil {
		return fmt.Errorf("postgres: insert: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// Close closes the connection.
func (p *Postgres) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.conn.Close(context.Background())
		p.conn = nil
	}
	return nil
}
