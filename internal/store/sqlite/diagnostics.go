package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyward/keyward/internal/store"
)

// PutStorageAccount never moves an account to another resource group: the
// update applies only in the account's own group, and a name held in
// another group is store.ErrConflict.
func (t *txn) PutStorageAccount(ctx context.Context, a *store.StorageAccount) error {
	t.note(store.ChangeStorageAccount, "", a.Name)
	res, err := t.exec(ctx, `INSERT INTO storage_accounts(name, resource_group, blob_endpoint, credential_kind, secret, created)
		VALUES(?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET blob_endpoint = excluded.blob_endpoint,
		credential_kind = excluded.credential_kind, secret = excluded.secret
		WHERE storage_accounts.resource_group = excluded.resource_group COLLATE NOCASE`,
		a.Name, a.ResourceGroup, a.BlobEndpoint, a.CredentialKind, a.Secret, unix(a.Created))
	if err := mustAffect(res, err); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the storage account %s belongs to another resource group", store.ErrConflict, a.Name)
	} else {
		return err
	}
}

const accountCols = `name, resource_group, blob_endpoint, credential_kind, secret, created`

func scanAccount(row scanner) (*store.StorageAccount, error) {
	var a store.StorageAccount
	var created int64
	if err := row.Scan(&a.Name, &a.ResourceGroup, &a.BlobEndpoint, &a.CredentialKind, &a.Secret, &created); err != nil {
		return nil, notFound(err)
	}
	a.Created = fromUnix(created)
	return &a, nil
}

func (t *txn) GetStorageAccount(ctx context.Context, name string) (*store.StorageAccount, error) {
	return scanAccount(t.queryRow(ctx, `SELECT `+accountCols+` FROM storage_accounts WHERE name = ?`, name))
}

func (t *txn) ListStorageAccounts(ctx context.Context) ([]*store.StorageAccount, error) {
	rows, err := t.query(ctx, `SELECT `+accountCols+` FROM storage_accounts ORDER BY name`)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.StorageAccount
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func (t *txn) DeleteStorageAccount(ctx context.Context, name string) error {
	t.note(store.ChangeStorageAccount, "", name)
	return mustAffect(t.exec(ctx, `DELETE FROM storage_accounts WHERE name = ?`, name))
}

func (t *txn) PutDiagnosticSetting(ctx context.Context, d *store.DiagnosticSetting) error {
	t.note(store.ChangeDiagnosticSetting, d.HSM, d.Name)
	_, err := t.exec(ctx, `INSERT INTO diagnostic_settings(hsm, name, storage_account, enabled, created) VALUES(?, ?, ?, ?, ?)
		ON CONFLICT(hsm, name) DO UPDATE SET storage_account = excluded.storage_account, enabled = excluded.enabled, created = excluded.created`,
		d.HSM, d.Name, d.StorageAccount, boolInt(d.Enabled), unix(d.Created))
	return err
}

func scanSetting(row scanner) (*store.DiagnosticSetting, error) {
	var d store.DiagnosticSetting
	var enabled int
	var created int64
	if err := row.Scan(&d.HSM, &d.Name, &d.StorageAccount, &enabled, &created); err != nil {
		return nil, notFound(err)
	}
	d.Enabled, d.Created = enabled == 1, fromUnix(created)
	return &d, nil
}

func (t *txn) GetDiagnosticSetting(ctx context.Context, hsm, name string) (*store.DiagnosticSetting, error) {
	return scanSetting(t.queryRow(ctx, `SELECT hsm, name, storage_account, enabled, created FROM diagnostic_settings WHERE hsm = ? AND name = ?`, hsm, name))
}

func (t *txn) ListDiagnosticSettings(ctx context.Context, hsm string) ([]*store.DiagnosticSetting, error) {
	rows, err := t.query(ctx, `SELECT hsm, name, storage_account, enabled, created FROM diagnostic_settings
		WHERE ? = '' OR hsm = ? ORDER BY hsm, name`, hsm, hsm)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.DiagnosticSetting
	for rows.Next() {
		d, err := scanSetting(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

func (t *txn) DeleteDiagnosticSetting(ctx context.Context, hsm, name string) error {
	t.note(store.ChangeDiagnosticSetting, hsm, name)
	return mustAffect(t.exec(ctx, `DELETE FROM diagnostic_settings WHERE hsm = ? AND name = ?`, hsm, name))
}
