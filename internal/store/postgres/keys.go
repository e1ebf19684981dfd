package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// InsertHSM implements store.HSMs.
func (t *txn) InsertHSM(ctx context.Context, h *store.HSM) error {
	t.note(store.ChangeHSM, h.Name, h.ID)
	_, err := t.exec(ctx, `INSERT INTO hsms(id, name, state, domain_id, domain_key, admins, retention_days, purge_protection, created,
		resource_group, exchange_key, exchange_cert, location, tags, deleted) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		h.ID, h.Name, h.State, h.DomainID, nonNilBytes(h.DomainKey), toJSON(h.Admins), h.RetentionDays, h.PurgeProtection, unix(h.Created),
		h.ResourceGroup, nonNilBytes(h.ExchangeKey), nonNilBytes(h.ExchangeCert), location(h.Location), toJSON(tagsOf(h.Tags)), unix(h.Deleted))
	return err
}

// UpdateHSM implements store.HSMs.
func (t *txn) UpdateHSM(ctx context.Context, h *store.HSM) error {
	t.note(store.ChangeHSM, h.Name, h.ID)
	return mustAffect(t.exec(ctx, `UPDATE hsms SET state = $1, domain_id = $2, domain_key = $3, exchange_key = $4, exchange_cert = $5,
		tags = $6, deleted = $7 WHERE name = $8`,
		h.State, h.DomainID, nonNilBytes(h.DomainKey), nonNilBytes(h.ExchangeKey), nonNilBytes(h.ExchangeCert),
		toJSON(tagsOf(h.Tags)), unix(h.Deleted), h.Name))
}

func location(l string) string {
	if l == "" {
		return "local"
	}
	return l
}

func tagsOf(t map[string]string) map[string]string {
	if t == nil {
		return map[string]string{}
	}
	return t
}

// DeleteHSM implements store.HSMs.
func (t *txn) DeleteHSM(ctx context.Context, name string) error {
	t.note(store.ChangeHSM, name, "")
	// Keys, roles and settings carry the HSM's name as stored: find it,
	// whatever the case of the caller's spelling.
	if err := t.tx.QueryRow(ctx, `SELECT name FROM hsms WHERE name_nocase = $1`, fold(name)).Scan(&name); err != nil {
		return notFound(err)
	}
	for _, q := range []string{`DELETE FROM keys WHERE hsm = $1`, `DELETE FROM role_assignments WHERE hsm = $1`,
		`DELETE FROM role_definitions WHERE hsm = $1`, `DELETE FROM diagnostic_settings WHERE hsm = $1`} {
		if _, err := t.exec(ctx, q, name); err != nil {
			return err
		}
	}
	return mustAffect(t.exec(ctx, `DELETE FROM hsms WHERE name = $1`, name))
}

const hsmCols = `id, name, state, domain_id, domain_key, admins, retention_days, purge_protection, created, resource_group, exchange_key, exchange_cert,
	location, tags, deleted`

func scanHSM(row pgx.Row) (*store.HSM, error) {
	var h store.HSM
	var admins, tags string
	var created, deleted int64
	if err := row.Scan(&h.ID, &h.Name, &h.State, &h.DomainID, &h.DomainKey, &admins, &h.RetentionDays, &h.PurgeProtection, &created,
		&h.ResourceGroup, &h.ExchangeKey, &h.ExchangeCert, &h.Location, &tags, &deleted); err != nil {
		return nil, notFound(err)
	}
	h.Created, h.Deleted = fromUnix(created), fromUnix(deleted)
	if err := fromJSON(tags, &h.Tags); err != nil {
		return nil, err
	}
	return &h, fromJSON(admins, &h.Admins)
}

// GetHSM implements store.HSMs.
func (t *txn) GetHSM(ctx context.Context, name string) (*store.HSM, error) {
	return scanHSM(t.tx.QueryRow(ctx, `SELECT `+hsmCols+` FROM hsms WHERE name_nocase = $1`, fold(name)))
}

// ListHSMs implements store.HSMs.
func (t *txn) ListHSMs(ctx context.Context) ([]*store.HSM, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+hsmCols+` FROM hsms ORDER BY name`)
	return collect(rows, err, func(r pgx.Rows) (*store.HSM, error) { return scanHSM(r) })
}

// RolesSeeded implements store.HSMs.
func (t *txn) RolesSeeded(ctx context.Context, name string) (bool, error) {
	var seeded bool
	if err := t.tx.QueryRow(ctx, `SELECT roles_seeded FROM hsms WHERE name_nocase = $1`, fold(name)).Scan(&seeded); err != nil {
		return false, notFound(err)
	}
	return seeded, nil
}

// SetRolesSeeded implements store.HSMs.
func (t *txn) SetRolesSeeded(ctx context.Context, name string) error {
	t.note(store.ChangeHSM, name, "")
	return mustAffect(t.exec(ctx, `UPDATE hsms SET roles_seeded = true WHERE name_nocase = $1`, fold(name)))
}

const keyCols = `k.hsm, k.name, k.created, k.deleted, k.scheduled_purge, k.rotation_policy`

func scanKey(row pgx.Row) (*store.Key, error) {
	var k store.Key
	var created, deleted, purge int64
	if err := row.Scan(&k.HSM, &k.Name, &created, &deleted, &purge, &k.RotationPolicy); err != nil {
		return nil, notFound(err)
	}
	k.Created, k.Deleted, k.ScheduledPurge = fromUnix(created), fromUnix(deleted), fromUnix(purge)
	return &k, nil
}

// GetKey implements store.Keys.
func (t *txn) GetKey(ctx context.Context, hsm, name string) (*store.Key, error) {
	return scanKey(t.tx.QueryRow(ctx, `SELECT `+keyCols+` FROM keys k WHERE k.hsm = $1 AND k.name_nocase = $2`, hsm, fold(name)))
}

// PutKey implements store.Keys.
func (t *txn) PutKey(ctx context.Context, k *store.Key) error {
	t.note(store.ChangeKey, k.HSM, k.Name)
	_, err := t.exec(ctx, `INSERT INTO keys(hsm, name, created, deleted, scheduled_purge, rotation_policy) VALUES($1, $2, $3, $4, $5, $6)
		ON CONFLICT (hsm, name_nocase) DO UPDATE SET deleted = excluded.deleted, scheduled_purge = excluded.scheduled_purge,
		rotation_policy = excluded.rotation_policy`,
		k.HSM, k.Name, unix(k.Created), unix(k.Deleted), unix(k.ScheduledPurge), k.RotationPolicy)
	return err
}

// PurgeKey implements store.Keys.
func (t *txn) PurgeKey(ctx context.Context, hsm, name string) error {
	t.note(store.ChangeKey, hsm, name)
	return mustAffect(t.exec(ctx, `DELETE FROM keys WHERE hsm = $1 AND name_nocase = $2`, hsm, fold(name)))
}

const versionCols = `v.hsm, v.name, v.version, v.seq, v.kty, v.ops, v.enabled, v.nbf, v.exp, v.created, v.updated, v.tags, v.exportable, v.release_policy, v.public, v.sealed`

func scanVersion(row pgx.Row, prefix ...any) (*store.KeyVersion, error) {
	var v store.KeyVersion
	var ops, tags string
	var nbf, exp, created, updated int64
	dest := append(prefix, &v.HSM, &v.Name, &v.Version, &v.Seq, &v.Kty, &ops, &v.Enabled, &nbf, &exp, &created, &updated, &tags, &v.Exportable, &v.ReleasePolicy, &v.Public, &v.Sealed)
	if err := row.Scan(dest...); err != nil {
		return nil, notFound(err)
	}
	v.NotBefore, v.Expires, v.Created, v.Updated = fromUnix(nbf), fromUnix(exp), fromUnix(created), fromUnix(updated)
	if err := fromJSON(ops, &v.Ops); err != nil {
		return nil, err
	}
	return &v, fromJSON(tags, &v.Tags)
}

// InsertKeyVersion implements store.Keys. The primary key and the unique
// (key, seq) index refuse a taken version id or sequence number, and the
// foreign key a version of no key; writers are serialised besides.
func (t *txn) InsertKeyVersion(ctx context.Context, v *store.KeyVersion) error {
	t.note(store.ChangeKey, v.HSM, v.Name)
	_, err := t.exec(ctx, `INSERT INTO key_versions(hsm, name, version, seq, kty, ops, enabled, nbf, exp, created, updated, tags, exportable, release_policy, public, sealed)
		VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		v.HSM, v.Name, v.Version, v.Seq, v.Kty, toJSON(v.Ops), v.Enabled, unix(v.NotBefore), unix(v.Expires),
		unix(v.Created), unix(v.Updated), toJSON(v.Tags), v.Exportable, nonNilBytes(v.ReleasePolicy), nonNilBytes(v.Public), nonNilBytes(v.Sealed))
	return err
}

// UpdateKeyVersion implements store.Keys: the mutable fields only.
func (t *txn) UpdateKeyVersion(ctx context.Context, v *store.KeyVersion) error {
	t.note(store.ChangeKey, v.HSM, v.Name)
	return mustAffect(t.exec(ctx, `UPDATE key_versions SET ops = $1, enabled = $2, nbf = $3, exp = $4, updated = $5, tags = $6, release_policy = $7
		WHERE hsm = $8 AND name_nocase = $9 AND version = $10`,
		toJSON(v.Ops), v.Enabled, unix(v.NotBefore), unix(v.Expires), unix(v.Updated), toJSON(v.Tags), nonNilBytes(v.ReleasePolicy),
		v.HSM, fold(v.Name), v.Version))
}

// GetKeyVersion implements store.Keys.
func (t *txn) GetKeyVersion(ctx context.Context, hsm, name, version string) (*store.KeyVersion, error) {
	return scanVersion(t.tx.QueryRow(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = $1 AND v.name_nocase = $2 AND v.version = $3`,
		hsm, fold(name), version))
}

// LatestKeyVersion implements store.Keys.
func (t *txn) LatestKeyVersion(ctx context.Context, hsm, name string) (*store.KeyVersion, error) {
	return scanVersion(t.tx.QueryRow(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = $1 AND v.name_nocase = $2
		ORDER BY v.seq DESC LIMIT 1`, hsm, fold(name)))
}

// ListKeyVersions implements store.Keys.
func (t *txn) ListKeyVersions(ctx context.Context, hsm, name string, after int64, limit int) ([]store.KeyVersion, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = $1 AND v.name_nocase = $2 AND v.seq > $3
		ORDER BY v.seq LIMIT $4`, hsm, fold(name), after, limit)
	return collect(rows, err, func(r pgx.Rows) (store.KeyVersion, error) {
		v, err := scanVersion(r)
		if err != nil {
			return store.KeyVersion{}, err
		}
		return *v, nil
	})
}

// ListKeys implements store.Keys.
func (t *txn) ListKeys(ctx context.Context, hsm string, deleted bool, after string, limit int) ([]store.KeyListItem, error) {
	cond := `k.deleted = 0`
	if deleted {
		cond = `k.deleted <> 0`
	}
	rows, err := t.tx.Query(ctx, `SELECT `+keyCols+`, `+versionCols+` FROM keys k
		JOIN LATERAL (SELECT * FROM key_versions WHERE hsm = k.hsm AND name_nocase = k.name_nocase ORDER BY seq DESC LIMIT 1) v ON true
		WHERE k.hsm = $1 AND `+cond+` AND k.name_nocase > $2 ORDER BY k.name_nocase LIMIT $3`, hsm, fold(after), limit)
	return collect(rows, err, func(r pgx.Rows) (store.KeyListItem, error) {
		var k store.Key
		var created, del, purge int64
		v, err := scanVersion(r, &k.HSM, &k.Name, &created, &del, &purge, &k.RotationPolicy)
		if err != nil {
			return store.KeyListItem{}, err
		}
		k.Created, k.Deleted, k.ScheduledPurge = fromUnix(created), fromUnix(del), fromUnix(purge)
		return store.KeyListItem{Key: k, Latest: *v}, nil
	})
}

// NoteNearExpiry implements store.Keys. The time is kept in seconds, and
// never as 0, which means "not notified".
func (t *txn) NoteNearExpiry(ctx context.Context, hsm, name, version string, at time.Time) (bool, error) {
	t.note(store.ChangeKey, hsm, name)
	tag, err := t.exec(ctx, `UPDATE key_versions SET near_expiry_notified = $1
		WHERE hsm = $2 AND name_nocase = $3 AND version = $4 AND near_expiry_notified = 0`, max(unix(at), 1), hsm, fold(name), version)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	var one int
	if err := t.tx.QueryRow(ctx, `SELECT 1 FROM key_versions WHERE hsm = $1 AND name_nocase = $2 AND version = $3`, hsm, fold(name), version).
		Scan(&one); err != nil {
		return false, notFound(err)
	}
	return false, nil
}
