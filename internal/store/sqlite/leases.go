package sqlite

import (
	"context"
	"time"
)

// TakeLease implements store.Leases. Expiry is kept in milliseconds: a
// lease may last less than a second in tests.
func (t *txn) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := t.exec(ctx, `INSERT INTO leases(name, holder, expires) VALUES(?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
		WHERE leases.holder = excluded.holder OR leases.expires <= ?`,
		name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// ReleaseLease implements store.Leases.
func (t *txn) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := t.exec(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
	return err
}
