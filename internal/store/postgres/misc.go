package postgres

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// GetNode implements store.Node. Migration 1 creates the one row; a
// missing row reads as settings never set.
func (t *txn) GetNode(ctx context.Context) (*store.NodeSettings, error) {
	var n store.NodeSettings
	err := t.tx.QueryRow(ctx, `SELECT tenant_id, subscription_id, seal, secret_pepper, checkpoint_key, bootstrap_admin,
		control_plane_seeded FROM node WHERE id = 1`).
		Scan(&n.TenantID, &n.SubscriptionID, &n.Seal, &n.SecretPepper, &n.CheckpointKey, &n.BootstrapAdmin, &n.ControlPlaneSeeded)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound(err)
	}
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
		control_plane_seeded) VALUES(1, $1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET tenant_id = excluded.tenant_id, subscription_id = excluded.subscription_id, seal = excluded.seal,
		secret_pepper = excluded.secret_pepper, checkpoint_key = excluded.checkpoint_key, bootstrap_admin = excluded.bootstrap_admin,
		control_plane_seeded = excluded.control_plane_seeded`,
		n.TenantID, n.SubscriptionID, n.Seal, nonNilBytes(n.SecretPepper), nonNilBytes(n.CheckpointKey), n.BootstrapAdmin,
		n.ControlPlaneSeeded)
	return err
}

// PutObject implements store.Objects.
func (t *txn) PutObject(ctx context.Context, o *store.Object) error {
	t.note(store.ObjectChange(o.Kind), "", o.ID)
	_, err := t.exec(ctx, `INSERT INTO objects(kind, id, data) VALUES($1, $2, $3) ON CONFLICT (kind, id) DO UPDATE SET data = excluded.data`,
		o.Kind, strings.ToLower(o.ID), nonNilBytes(o.Data))
	return err
}

// GetObject implements store.Objects.
func (t *txn) GetObject(ctx context.Context, kind, id string) (*store.Object, error) {
	o := store.Object{Kind: kind}
	if err := t.tx.QueryRow(ctx, `SELECT id, data FROM objects WHERE kind = $1 AND id = $2`, kind, strings.ToLower(id)).Scan(&o.ID, &o.Data); err != nil {
		return nil, notFound(err)
	}
	return &o, nil
}

// ListObjects implements store.Objects.
func (t *txn) ListObjects(ctx context.Context, kind, prefix string) ([]*store.Object, error) {
	rows, err := t.tx.Query(ctx, `SELECT id, data FROM objects WHERE kind = $1 AND starts_with(id, $2) ORDER BY id`,
		kind, strings.ToLower(prefix))
	return collect(rows, err, func(r pgx.Rows) (*store.Object, error) {
		o := store.Object{Kind: kind}
		if err := r.Scan(&o.ID, &o.Data); err != nil {
			return nil, notFound(err)
		}
		return &o, nil
	})
}

// DeleteObject implements store.Objects.
func (t *txn) DeleteObject(ctx context.Context, kind, id string) error {
	t.note(store.ObjectChange(kind), "", id)
	return mustAffect(t.exec(ctx, `DELETE FROM objects WHERE kind = $1 AND id = $2`, kind, strings.ToLower(id)))
}

// TakeLease implements store.Leases. Expiry is kept in milliseconds: a
// lease may last less than a second in tests. The upsert takes the lease
// row's lock, so nodes competing for a lease (outside Update's write lock
// too) see each other's holder.
func (t *txn) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	tag, err := t.exec(ctx, `INSERT INTO leases(name, holder, expires) VALUES($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
		WHERE leases.holder = excluded.holder OR leases.expires <= $4`,
		name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// ReleaseLease implements store.Leases.
func (t *txn) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := t.exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder)
	return err
}

const jobCols = `id, hsm, kind, status, details, folder_uri, error_kind, error_code, error_message, started, ended, node`

// InsertJob implements store.Jobs.
func (t *txn) InsertJob(ctx context.Context, j *store.Job) error {
	t.note(store.ChangeJob, j.HSM, j.ID)
	_, err := t.exec(ctx, `INSERT INTO jobs(`+jobCols+`) VALUES($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		j.ID, j.HSM, j.Kind, j.Status, j.Details, j.FolderURI, j.ErrorKind, j.ErrorCode, j.ErrorMessage, unix(j.Start), unix(j.End), j.Node)
	return err
}

// UpdateJob implements store.Jobs.
func (t *txn) UpdateJob(ctx context.Context, j *store.Job) error {
	t.note(store.ChangeJob, j.HSM, j.ID)
	return mustAffect(t.exec(ctx, `UPDATE jobs SET status = $1, details = $2, folder_uri = $3, error_kind = $4, error_code = $5,
		error_message = $6, ended = $7 WHERE id = $8`,
		j.Status, j.Details, j.FolderURI, j.ErrorKind, j.ErrorCode, j.ErrorMessage, unix(j.End), j.ID))
}

func scanJob(row pgx.Row) (*store.Job, error) {
	var j store.Job
	var start, end int64
	if err := row.Scan(&j.ID, &j.HSM, &j.Kind, &j.Status, &j.Details, &j.FolderURI, &j.ErrorKind, &j.ErrorCode, &j.ErrorMessage, &start, &end, &j.Node); err != nil {
		return nil, notFound(err)
	}
	j.Start, j.End = fromUnix(start), fromUnix(end)
	return &j, nil
}

// GetJob implements store.Jobs.
func (t *txn) GetJob(ctx context.Context, hsm, id string) (*store.Job, error) {
	return scanJob(t.tx.QueryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = $1 AND hsm = $2`, id, hsm))
}

// RunningJobs implements store.Jobs.
func (t *txn) RunningJobs(ctx context.Context, hsm string) ([]*store.Job, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+jobCols+` FROM jobs WHERE status = $1 AND ($2 = '' OR hsm = $2) ORDER BY started, id`,
		store.JobRunning, hsm)
	return collect(rows, err, func(r pgx.Rows) (*store.Job, error) { return scanJob(r) })
}
