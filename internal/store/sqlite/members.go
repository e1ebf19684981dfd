package sqlite

import (
	"context"

	"github.com/keyward/keyward/internal/store"
)

func (t *txn) PutMembership(ctx context.Context, m *store.Membership) error {
	t.note(store.ChangePrincipal, "", m.GroupID)
	_, err := t.exec(ctx, `INSERT INTO members(group_id, member_id, since, until) VALUES(?, ?, ?, ?)
		ON CONFLICT (group_id, member_id) DO UPDATE SET since = excluded.since, until = excluded.until`,
		m.GroupID, m.MemberID, unix(m.Since), unix(m.Until))
	return err
}

func (t *txn) memberships(ctx context.Context, query string, arg string) ([]store.Membership, error) {
	rows, err := t.query(ctx, query, arg)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []store.Membership
	for rows.Next() {
		var m store.Membership
		var since, until int64
		if err := rows.Scan(&m.GroupID, &m.MemberID, &since, &until); err != nil {
			return nil, notFound(err)
		}
		m.Since, m.Until = fromUnix(since), fromUnix(until)
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t *txn) Memberships(ctx context.Context, memberID string) ([]store.Membership, error) {
	return t.memberships(ctx, `SELECT group_id, member_id, since, until FROM members WHERE member_id = ? ORDER BY group_id`, memberID)
}

func (t *txn) GroupMemberships(ctx context.Context, groupID string) ([]store.Membership, error) {
	return t.memberships(ctx, `SELECT group_id, member_id, since, until FROM members WHERE group_id = ? ORDER BY member_id`, groupID)
}
