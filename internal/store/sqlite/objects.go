package sqlite

import (
	"context"
	"strings"

	"github.com/keyward/keyward/internal/store"
)

func (t *txn) PutObject(ctx context.Context, o *store.Object) error {
	t.note(store.ObjectChange(o.Kind), "", o.ID)
	_, err := t.exec(ctx, `INSERT INTO objects(kind, id, data) VALUES(?, ?, ?) ON CONFLICT(kind, id) DO UPDATE SET data = excluded.data`,
		o.Kind, strings.ToLower(o.ID), o.Data)
	return err
}

func (t *txn) GetObject(ctx context.Context, kind, id string) (*store.Object, error) {
	o := store.Object{Kind: kind}
	if err := t.queryRow(ctx, `SELECT id, data FROM objects WHERE kind = ? AND id = ?`, kind, strings.ToLower(id)).Scan(&o.ID, &o.Data); err != nil {
		return nil, notFound(err)
	}
	return &o, nil
}

func (t *txn) ListObjects(ctx context.Context, kind, prefix string) ([]*store.Object, error) {
	rows, err := t.query(ctx, `SELECT id, data FROM objects WHERE kind = ? AND substr(id, 1, ?) = ? ORDER BY id`,
		kind, len(prefix), strings.ToLower(prefix))
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.Object
	for rows.Next() {
		o := store.Object{Kind: kind}
		if err := rows.Scan(&o.ID, &o.Data); err != nil {
			return nil, notFound(err)
		}
		out = append(out, &o)
	}
	return out, rows.Err()
}

func (t *txn) DeleteObject(ctx context.Context, kind, id string) error {
	t.note(store.ObjectChange(kind), "", id)
	return mustAffect(t.exec(ctx, `DELETE FROM objects WHERE kind = ? AND id = ?`, kind, strings.ToLower(id)))
}
