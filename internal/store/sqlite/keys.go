package sqlite

import (
	"context"

	"github.com/keyward/keyward/internal/store"
)

func (t *txn) InsertHSM(ctx context.Context, h *store.HSM) error {
	t.note(store.ChangeHSM, h.Name, h.ID)
	_, err := t.exec(ctx, `INSERT INTO hsms(id, name, state, domain_id, domain_key, admins, retention_days, purge_protection, created,
		resource_group, exchange_key, exchange_cert, location, tags, deleted) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		h.ID, h.Name, h.State, h.DomainID, nonNilBytes(h.DomainKey), toJSON(h.Admins), h.RetentionDays, boolInt(h.PurgeProtection), unix(h.Created),
		h.ResourceGroup, nonNilBytes(h.ExchangeKey), nonNilBytes(h.ExchangeCert), location(h.Location), toJSON(tagsOf(h.Tags)), unix(h.Deleted))
	return err
}

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func (t *txn) UpdateHSM(ctx context.Context, h *store.HSM) error {
	t.note(store.ChangeHSM, h.Name, h.ID)
	return mustAffect(t.exec(ctx, `UPDATE hsms SET state = ?, domain_id = ?, domain_key = ?, exchange_key = ?, exchange_cert = ?,
		tags = ?, deleted = ? WHERE name = ?`,
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

func (t *txn) DeleteHSM(ctx context.Context, name string) error {
	t.note(store.ChangeHSM, name, "")
	// Keys, roles and settings carry the HSM's name as stored: find it,
	// whatever the case of the caller's spelling.
	if err := t.queryRow(ctx, `SELECT name FROM hsms WHERE name = ? COLLATE NOCASE`, name).Scan(&name); err != nil {
		return notFound(err)
	}
	for _, q := range []string{`DELETE FROM keys WHERE hsm = ?`, `DELETE FROM role_assignments WHERE hsm = ?`,
		`DELETE FROM role_definitions WHERE hsm = ?`, `DELETE FROM diagnostic_settings WHERE hsm = ?`} {
		if _, err := t.exec(ctx, q, name); err != nil {
			return err
		}
	}
	return mustAffect(t.exec(ctx, `DELETE FROM hsms WHERE name = ?`, name))
}

const hsmCols = `id, name, state, domain_id, domain_key, admins, retention_days, purge_protection, created, resource_group, exchange_key, exchange_cert,
	location, tags, deleted`

func scanHSM(row scanner) (*store.HSM, error) {
	var h store.HSM
	var admins, tags string
	var pp int
	var created, deleted int64
	if err := row.Scan(&h.ID, &h.Name, &h.State, &h.DomainID, &h.DomainKey, &admins, &h.RetentionDays, &pp, &created,
		&h.ResourceGroup, &h.ExchangeKey, &h.ExchangeCert, &h.Location, &tags, &deleted); err != nil {
		return nil, notFound(err)
	}
	h.PurgeProtection, h.Created, h.Deleted = pp == 1, fromUnix(created), fromUnix(deleted)
	if err := fromJSON(tags, &h.Tags); err != nil {
		return nil, err
	}
	return &h, fromJSON(admins, &h.Admins)
}

func (t *txn) GetHSM(ctx context.Context, name string) (*store.HSM, error) {
	return scanHSM(t.queryRow(ctx, `SELECT `+hsmCols+` FROM hsms WHERE name = ? COLLATE NOCASE`, name))
}

func (t *txn) ListHSMs(ctx context.Context) ([]*store.HSM, error) {
	rows, err := t.query(ctx, `SELECT `+hsmCols+` FROM hsms ORDER BY name`)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.HSM
	for rows.Next() {
		h, err := scanHSM(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

const keyCols = `k.hsm, k.name, k.created, k.deleted, k.scheduled_purge, k.rotation_policy`

func scanKey(row scanner, extra ...any) (*store.Key, error) {
	var k store.Key
	var created, deleted, purge int64
	dest := append([]any{&k.HSM, &k.Name, &created, &deleted, &purge, &k.RotationPolicy}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, notFound(err)
	}
	k.Created, k.Deleted, k.ScheduledPurge = fromUnix(created), fromUnix(deleted), fromUnix(purge)
	return &k, nil
}

func (t *txn) GetKey(ctx context.Context, hsm, name string) (*store.Key, error) {
	return scanKey(t.queryRow(ctx, `SELECT `+keyCols+` FROM keys k WHERE k.hsm = ? AND k.name = ?`, hsm, name))
}

func (t *txn) PutKey(ctx context.Context, k *store.Key) error {
	t.note(store.ChangeKey, k.HSM, k.Name)
	_, err := t.exec(ctx, `INSERT INTO keys(hsm, name, created, deleted, scheduled_purge, rotation_policy) VALUES(?, ?, ?, ?, ?, ?)
		ON CONFLICT(hsm, name) DO UPDATE SET deleted = excluded.deleted, scheduled_purge = excluded.scheduled_purge,
		rotation_policy = excluded.rotation_policy`,
		k.HSM, k.Name, unix(k.Created), unix(k.Deleted), unix(k.ScheduledPurge), k.RotationPolicy)
	return err
}

func (t *txn) PurgeKey(ctx context.Context, hsm, name string) error {
	t.note(store.ChangeKey, hsm, name)
	return mustAffect(t.exec(ctx, `DELETE FROM keys WHERE hsm = ? AND name = ?`, hsm, name))
}

const versionCols = `v.hsm, v.name, v.version, v.seq, v.kty, v.ops, v.enabled, v.nbf, v.exp, v.created, v.updated, v.tags, v.exportable, v.release_policy, v.public, v.sealed`

func scanVersion(row scanner, prefix ...any) (*store.KeyVersion, error) {
	var v store.KeyVersion
	var ops, tags string
	var enabled, exportable int
	var nbf, exp, created, updated int64
	dest := append(prefix, &v.HSM, &v.Name, &v.Version, &v.Seq, &v.Kty, &ops, &enabled, &nbf, &exp, &created, &updated, &tags, &exportable, &v.ReleasePolicy, &v.Public, &v.Sealed)
	if err := row.Scan(dest...); err != nil {
		return nil, notFound(err)
	}
	v.Enabled, v.Exportable = enabled == 1, exportable == 1
	v.NotBefore, v.Expires, v.Created, v.Updated = fromUnix(nbf), fromUnix(exp), fromUnix(created), fromUnix(updated)
	if err := fromJSON(ops, &v.Ops); err != nil {
		return nil, err
	}
	return &v, fromJSON(tags, &v.Tags)
}

func (t *txn) InsertKeyVersion(ctx context.Context, v *store.KeyVersion) error {
	t.note(store.ChangeKey, v.HSM, v.Name)
	_, err := t.exec(ctx, `INSERT INTO key_versions(hsm, name, version, seq, kty, ops, enabled, nbf, exp, created, updated, tags, exportable, release_policy, public, sealed)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		v.HSM, v.Name, v.Version, v.Seq, v.Kty, toJSON(v.Ops), boolInt(v.Enabled), unix(v.NotBefore), unix(v.Expires),
		unix(v.Created), unix(v.Updated), toJSON(v.Tags), boolInt(v.Exportable), nonNil(v.ReleasePolicy), v.Public, v.Sealed)
	return err
}

// UpdateKeyVersion changes the mutable fields of a version only.
func (t *txn) UpdateKeyVersion(ctx context.Context, v *store.KeyVersion) error {
	t.note(store.ChangeKey, v.HSM, v.Name)
	return mustAffect(t.exec(ctx, `UPDATE key_versions SET ops = ?, enabled = ?, nbf = ?, exp = ?, updated = ?, tags = ?, release_policy = ?
		WHERE hsm = ? AND name = ? AND version = ?`,
		toJSON(v.Ops), boolInt(v.Enabled), unix(v.NotBefore), unix(v.Expires), unix(v.Updated), toJSON(v.Tags), nonNil(v.ReleasePolicy),
		v.HSM, v.Name, v.Version))
}

func (t *txn) GetKeyVersion(ctx context.Context, hsm, name, version string) (*store.KeyVersion, error) {
	return scanVersion(t.queryRow(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = ? AND v.name = ? AND v.version = ?`, hsm, name, version))
}

func (t *txn) LatestKeyVersion(ctx context.Context, hsm, name string) (*store.KeyVersion, error) {
	return scanVersion(t.queryRow(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = ? AND v.name = ? ORDER BY v.seq DESC LIMIT 1`, hsm, name))
}

func (t *txn) ListKeyVersions(ctx context.Context, hsm, name string, after int64, limit int) ([]store.KeyVersion, error) {
	rows, err := t.query(ctx, `SELECT `+versionCols+` FROM key_versions v WHERE v.hsm = ? AND v.name = ? AND v.seq > ? ORDER BY v.seq LIMIT ?`, hsm, name, after, limit)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []store.KeyVersion
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, rows.Err()
}

func (t *txn) ListKeys(ctx context.Context, hsm string, deleted bool, after string, limit int) ([]store.KeyListItem, error) {
	cond := `k.deleted = 0`
	if deleted {
		cond = `k.deleted <> 0`
	}
	rows, err := t.query(ctx, `SELECT `+keyCols+`, `+versionCols+` FROM keys k
		JOIN key_versions v ON v.hsm = k.hsm AND v.name = k.name
			AND v.seq = (SELECT MAX(seq) FROM key_versions WHERE hsm = k.hsm AND name = k.name)
		WHERE k.hsm = ? AND `+cond+` AND k.name > ? ORDER BY k.name LIMIT ?`, hsm, after, limit)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []store.KeyListItem
	for rows.Next() {
		var k store.Key
		var created, del, purge int64
		v, err := scanVersion(rows, &k.HSM, &k.Name, &created, &del, &purge, &k.RotationPolicy)
		if err != nil {
			return nil, err
		}
		k.Created, k.Deleted, k.ScheduledPurge = fromUnix(created), fromUnix(del), fromUnix(purge)
		out = append(out, store.KeyListItem{Key: k, Latest: *v})
	}
	return out, rows.Err()
}
