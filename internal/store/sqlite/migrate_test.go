package sqlite

import (
	"context"
	"encoding/base64"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// undo lists, for each migration, the statements that take a database
// back to the schema before it, so that a test can build a file of an
// older version.
var undo = map[int][]string{
	15: {`ALTER TABLE key_versions DROP COLUMN release_policy`},
	14: {`DROP INDEX role_assignments_scope`},
	13: {`ALTER TABLE jobs DROP COLUMN node`},
	12: {`ALTER TABLE members DROP COLUMN since`, `ALTER TABLE members DROP COLUMN until`},
	11: {`DROP TABLE refresh_tokens`, `DROP TABLE authenticators`},
	10: {`DROP TABLE node`, `DROP TABLE shipper_cursors`, `ALTER TABLE hsms DROP COLUMN roles_seeded`,
		`ALTER TABLE key_versions DROP COLUMN near_expiry_notified`, `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`},
	9: {`DROP TABLE jobs`},
	8: {`DROP TABLE leases`},
	7: {`ALTER TABLE role_assignments DROP COLUMN created_by`},
	6: {`DROP INDEX hsms_name_nocase`},
}

// rewind takes db back to schema version `to` (at least 5).
func rewind(t *testing.T, db *DB, to int) {
	t.Helper()
	if len(undo) != len(migrations)-5 {
		t.Fatalf("undo covers migrations 6 to %d, not to %d", 5+len(undo), len(migrations))
	}
	ctx := context.Background()
	for v := len(migrations); v > to; v-- {
		for _, q := range undo[v] {
			if _, err := db.writer.ExecContext(ctx, q); err != nil {
				t.Fatalf("undoing migration %d: %s: %v", v, q, err)
			}
		}
	}
	if _, err := db.writer.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, to)); err != nil {
		t.Fatal(err)
	}
}

// TestMigrationMovesMeta: migration 10 carries every meta value of a data
// directory of version 9 to its column or table, and drops the meta table.
func TestMigrationMovesMeta(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rewind(t, db, 9)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	prod, dev := hsmRecord("Prod", "rg"), hsmRecord("dev", "rg")
	err = db.Update(ctx, func(tx store.Tx) error {
		for _, h := range []*store.HSM{prod, dev} {
			if err := tx.InsertHSM(ctx, h); err != nil {
				return err
			}
			if err := tx.PutKey(ctx, &store.Key{HSM: h.Name, Name: "K", Created: t0}); err != nil {
				return err
			}
			for i, v := range []string{"v1", "v2"} {
				// Schema 9's columns: today's InsertKeyVersion writes later ones.
				if _, err := tx.(*txn).exec(ctx, `INSERT INTO key_versions(hsm, name, version, seq, kty, ops, enabled, nbf, exp, created, updated, tags, exportable, public, sealed)
					VALUES(?, 'K', ?, ?, 'EC-HSM', '["sign"]', 1, 0, 0, ?, ?, '{}', 0, '{}', x'01')`, h.Name, v, i+1, t0.Unix(), t0.Unix()); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	pepper, checkpoint := []byte{0, 1, 2, 250}, []byte("sealed checkpoint seed")
	meta := map[string]string{
		"tenant":              "tenant-id",
		"subscription":        "subscription-id",
		"seal":                "pkcs11",
		"secretPepper":        base64.StdEncoding.EncodeToString(pepper),
		"audit.checkpointKey": base64.StdEncoding.EncodeToString(checkpoint),
		"bootstrapAdmin":      "admin-id",
		"controlPlaneSeeded":  "1",
		// Cursors: a setting name may hold dots; spellings that differ by
		// case are one cursor, the furthest.
		"audit.delivered.Prod.logs":       "42",
		"audit.delivered.PROD.LOGS":       "40",
		"audit.delivered.Prod.my.setting": "7",
		"audit.delivered.dev.x":           "18446744073",
		// Flags of the Prod HSM (by id), and of one that is gone.
		"rbac.seeded." + prod.ID:               "1",
		"rbac.seeded.gone-id":                  "1",
		"rotation.notified." + prod.ID + ".v1": t0.Format(time.RFC3339),
		"rotation.notified.gone-id.v2":         t0.Format(time.RFC3339),
	}
	for k, v := range meta {
		if _, err := db.writer.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES(?, ?)`, k, v); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	db = open(t, path)
	var version, metaTables int
	if err := db.reader.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&version); err != nil || version != len(migrations) {
		t.Fatalf("schema version %d, %v", version, err)
	}
	if err := db.reader.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE name = 'meta'`).Scan(&metaTables); err != nil || metaTables != 0 {
		t.Fatalf("the meta table is still there: %d, %v", metaTables, err)
	}
	err = db.View(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		if n.TenantID != "tenant-id" || n.SubscriptionID != "subscription-id" || n.Seal != "pkcs11" || !slices.Equal(n.SecretPepper, pepper) ||
			!slices.Equal(n.CheckpointKey, checkpoint) || n.BootstrapAdmin != "admin-id" || !n.ControlPlaneSeeded {
			t.Errorf("node settings = %+v", n)
		}
		for _, c := range []struct {
			hsm, setting string
			want         uint64
		}{{"Prod", "logs", 42}, {"prod", "my.setting", 7}, {"dev", "x", 18446744073}} {
			got, err := tx.ShipperCursor(ctx, c.hsm, c.setting)
			if err != nil || got != c.want {
				t.Errorf("cursor %s/%s = %d, %v; want %d", c.hsm, c.setting, got, err, c.want)
			}
		}
		for name, want := range map[string]bool{"Prod": true, "dev": false} {
			if got, err := tx.RolesSeeded(ctx, name); err != nil || got != want {
				t.Errorf("RolesSeeded(%s) = %v, %v", name, got, err)
			}
		}
		rows, err := tx.(*txn).tx.QueryContext(ctx, `SELECT hsm, version, near_expiry_notified FROM key_versions WHERE near_expiry_notified <> 0`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var notified []string
		for rows.Next() {
			var h, v string
			var at int64
			if err := rows.Scan(&h, &v, &at); err != nil {
				return err
			}
			if at != t0.Unix() {
				t.Errorf("%s/%s notified at %d, want %d", h, v, at, t0.Unix())
			}
			notified = append(notified, h+"/"+v)
		}
		if !slices.Equal(notified, []string{"Prod/v1"}) {
			t.Errorf("notified versions: %v", notified)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(ctx, func(tx store.Tx) error {
		for _, c := range []struct {
			hsm, version string
			first        bool
		}{{"Prod", "v1", false}, {"Prod", "v2", true}, {"dev", "v1", true}} {
			if first, err := tx.NoteNearExpiry(ctx, c.hsm, "K", c.version, t0); err != nil || first != c.first {
				t.Errorf("NoteNearExpiry(%s, %s) = %v, %v", c.hsm, c.version, first, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
