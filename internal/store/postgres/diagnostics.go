package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/keyward/keyward/internal/store"
)

// PutStorageAccount implements store.Diagnostics. It never moves an
// account to another resource group: the update applies only in the
// account's own group, and a name held in another group is
// store.ErrConflict.
func (t *txn) PutStorageAccount(ctx context.Context, a *store.StorageAccount) error {
	t.note(store.ChangeStorageAccount, "", a.Name)
	tag, err := t.exec(ctx, `INSERT INTO storage_accounts(name, resource_group, blob_endpoint, credential_kind, secret, created)
		VALUES($1, $2, $3, $4, $5, $6)
		ON CONFLICT (name_nocase) DO UPDATE SET blob_endpoint = excluded.blob_endpoint,
		credential_kind = excluded.credential_kind, secret = excluded.secret
		WHERE lower(storage_accounts.resource_group) = lower(excluded.resource_group)`,
		a.Name, a.ResourceGroup, a.BlobEndpoint, a.CredentialKind, nonNilBytes(a.Secret), unix(a.Created))
	if err := mustAffect(tag, err); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: the storage account %s belongs to another resource group", store.ErrConflict, a.Name)
	} else {
		return err
	}
}

const accountCols = `name, resource_group, blob_endpoint, credential_kind, secret, created`

func scanAccount(row pgx.Row) (*store.StorageAccount, error) {
	var a store.StorageAccount
	var created int64
	if err := row.Scan(&a.Name, &a.ResourceGroup, &a.BlobEndpoint, &a.CredentialKind, &a.Secret, &created); err != nil {
		return nil, notFound(err)
	}
	a.Created = fromUnix(created)
	return &a, nil
}

// GetStorageAccount implements store.Diagnostics.
func (t *txn) GetStorageAccount(ctx context.Context, name string) (*store.StorageAccount, error) {
	return scanAccount(t.tx.QueryRow(ctx, `SELECT `+accountCols+` FROM storage_accounts WHERE name_nocase = $1`, fold(name)))
}

// ListStorageAccounts implements store.Diagnostics.
func (t *txn) ListStorageAccounts(ctx context.Context) ([]*store.StorageAccount, error) {
	rows, err := t.tx.Query(ctx, `SELECT `+accountCols+` FROM storage_accounts ORDER BY name_nocase`)
	return collect(rows, err, func(r pgx.Rows) (*store.StorageAccount, error) { return scanAccount(r) })
}

// DeleteStorageAccount implements store.Diagnostics.
func (t *txn) DeleteStorageAccount(ctx context.Context, name string) error {
	t.note(store.ChangeStorageAccount, "", name)
	return mustAffect(t.exec(ctx, `DELETE FROM storage_accounts WHERE name_nocase = $1`, fold(name)))
}

// PutDiagnosticSetting implements store.Diagnostics.
func (t *txn) PutDiagnosticSetting(ctx context.Context, d *store.DiagnosticSetting) error {
	t.note(store.ChangeDiagnosticSetting, d.HSM, d.Name)
	_, err := t.exec(ctx, `INSERT INTO diagnostic_settings(hsm, name, storage_account, enabled, created) VALUES($1, $2, $3, $4, $5)
		ON CONFLICT (hsm, name_nocase) DO UPDATE SET storage_account = excluded.storage_account, enabled = excluded.enabled, created = excluded.created`,
		d.HSM, d.Name, d.StorageAccount, d.Enabled, unix(d.Created))
	return err
}

func scanSetting(row pgx.Row) (*store.DiagnosticSetting, error) {
	var d store.DiagnosticSetting
	var created int64
	if err := row.Scan(&d.HSM, &d.Name, &d.StorageAccount, &d.Enabled, &created); err != nil {
		return nil, notFound(err)
	}
	d.Created = fromUnix(created)
	return &d, nil
}

// GetDiagnosticSetting implements store.Diagnostics.
func (t *txn) GetDiagnosticSetting(ctx context.Context, hsm, name string) (*store.DiagnosticSetting, error) {
	return scanSetting(t.tx.QueryRow(ctx, `SELECT hsm, name, storage_account, enabled, created FROM diagnostic_settings
		WHERE hsm = $1 AND name_nocase = $2`, hsm, fold(name)))
}

// ListDiagnosticSettings implements store.Diagnostics.
func (t *txn) ListDiagnosticSettings(ctx context.Context, hsm string) ([]*store.DiagnosticSetting, error) {
	rows, err := t.tx.Query(ctx, `SELECT hsm, name, storage_account, enabled, created FROM diagnostic_settings
		WHERE $1 = '' OR hsm = $1 ORDER BY hsm, name_nocase`, hsm)
	return collect(rows, err, func(r pgx.Rows) (*store.DiagnosticSetting, error) { return scanSetting(r) })
}

// DeleteDiagnosticSetting implements store.Diagnostics.
func (t *txn) DeleteDiagnosticSetting(ctx context.Context, hsm, name string) error {
	t.note(store.ChangeDiagnosticSetting, hsm, name)
	return mustAffect(t.exec(ctx, `DELETE FROM diagnostic_settings WHERE hsm = $1 AND name_nocase = $2`, hsm, fold(name)))
}

// ShipperCursor implements store.Diagnostics.
func (t *txn) ShipperCursor(ctx context.Context, hsm, setting string) (uint64, error) {
	var v int64
	if err := t.tx.QueryRow(ctx, `SELECT delivered FROM shipper_cursors WHERE hsm_nocase = $1 AND setting_nocase = $2`,
		fold(hsm), fold(setting)).Scan(&v); err != nil {
		return 0, notFound(err)
	}
	return uint64(v), nil
}

// SetShipperCursor implements store.Diagnostics. Audit sequence numbers
// stay far below 2^63, so they fit a BIGINT.
func (t *txn) SetShipperCursor(ctx context.Context, hsm, setting string, delivered uint64) error {
	t.note(store.ChangeNode, hsm, setting)
	_, err := t.exec(ctx, `INSERT INTO shipper_cursors(hsm_nocase, setting_nocase, delivered) VALUES($1, $2, $3)
		ON CONFLICT (hsm_nocase, setting_nocase) DO UPDATE SET delivered = excluded.delivered`, fold(hsm), fold(setting), int64(delivered))
	return err
}
