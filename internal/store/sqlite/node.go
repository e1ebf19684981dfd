package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/keyward/keyward/internal/store"
)

// GetNode implements store.Node. Migration 10 creates the one row; a
// missing row reads as settings never set.
func (t *txn) GetNode(ctx context.Context) (*store.NodeSettings, error) {
	var n store.NodeSettings
	var seeded int
	err := t.queryRow(ctx, `SELECT tenant_id, subscription_id, seal, secret_pepper, checkpoint_key, bootstrap_admin,
		control_plane_seeded FROM node WHERE id = 1`).
		Scan(&n.TenantID, &n.SubscriptionID, &n.Seal, &n.SecretPepper, &n.CheckpointKey, &n.BootstrapAdmin, &seeded)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, notFound(err)
	}
	n.ControlPlaneSeeded = seeded != 0
	if len(n.SecretPepper) == 0 {
		n.SecretPepper = nil
	}
	if len(n.CheckpointKey) == 0 {
		n.CheckpointKey = nil
	}
	return &n, nil
}

// UpdateNode implements store.Node.
func (t *txn) UpdateNode(ctx context.Context, n *store.NodeSettings) error {
	t.note(store.ChangeNode, "", "")
	_, err := t.exec(ctx, `INSERT INTO node(id, tenant_id, subscription_id, seal, secret_pepper, checkpoint_key, bootstrap_admin,
		control_plane_seeded) VALUES(1, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET tenant_id = excluded.tenant_id, subscription_id = excluded.subscription_id, seal = excluded.seal,
		secret_pepper = excluded.secret_pepper, checkpoint_key = excluded.checkpoint_key, bootstrap_admin = excluded.bootstrap_admin,
		control_plane_seeded = excluded.control_plane_seeded`,
		n.TenantID, n.SubscriptionID, n.Seal, nonNilBytes(n.SecretPepper), nonNilBytes(n.CheckpointKey), n.BootstrapAdmin,
		boolInt(n.ControlPlaneSeeded))
	return err
}

// ShipperCursor implements store.Diagnostics.
func (t *txn) ShipperCursor(ctx context.Context, hsm, setting string) (uint64, error) {
	var v int64
	if err := t.queryRow(ctx, `SELECT delivered FROM shipper_cursors WHERE hsm = ? AND setting = ?`, hsm, setting).Scan(&v); err != nil {
		return 0, notFound(err)
	}
	return uint64(v), nil
}

// SetShipperCursor implements store.Diagnostics. Audit sequence numbers
// stay far below 2^63, so they fit SQLite's signed integers.
func (t *txn) SetShipperCursor(ctx context.Context, hsm, setting string, delivered uint64) error {
	t.note(store.ChangeNode, hsm, setting)
	_, err := t.exec(ctx, `INSERT INTO shipper_cursors(hsm, setting, delivered) VALUES(?, ?, ?)
		ON CONFLICT(hsm, setting) DO UPDATE SET delivered = excluded.delivered`, hsm, setting, int64(delivered))
	return err
}

// RolesSeeded implements store.HSMs.
func (t *txn) RolesSeeded(ctx context.Context, name string) (bool, error) {
	var seeded int
	if err := t.queryRow(ctx, `SELECT roles_seeded FROM hsms WHERE name = ? COLLATE NOCASE`, name).Scan(&seeded); err != nil {
		return false, notFound(err)
	}
	return seeded != 0, nil
}

// SetRolesSeeded implements store.HSMs.
func (t *txn) SetRolesSeeded(ctx context.Context, name string) error {
	t.note(store.ChangeHSM, name, "")
	return mustAffect(t.exec(ctx, `UPDATE hsms SET roles_seeded = 1 WHERE name = ? COLLATE NOCASE`, name))
}

// NoteNearExpiry implements store.Keys. The time is kept in seconds, and
// never as 0, which means "not notified".
func (t *txn) NoteNearExpiry(ctx context.Context, hsm, name, version string, at time.Time) (bool, error) {
	t.note(store.ChangeKey, hsm, name)
	res, err := t.exec(ctx, `UPDATE key_versions SET near_expiry_notified = ?
		WHERE hsm = ? AND name = ? AND version = ? AND near_expiry_notified = 0`, max(unix(at), 1), hsm, name, version)
	if err != nil {
		return false, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return false, notFound(err)
	} else if n == 1 {
		return true, nil
	}
	var one int
	if err := t.queryRow(ctx, `SELECT 1 FROM key_versions WHERE hsm = ? AND name = ? AND version = ?`, hsm, name, version).
		Scan(&one); err != nil {
		return false, notFound(err)
	}
	return false, nil
}
