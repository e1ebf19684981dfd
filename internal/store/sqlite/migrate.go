package sqlite

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"strings"
)

// migrations are applied in order; the schema version is their count.
// A released migration never changes: add a new one instead.
var migrations = []string{
	// 1: directory, HSMs, keys.
	`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
	CREATE TABLE principals (
		id TEXT PRIMARY KEY,
		kind TEXT NOT NULL,
		display_name TEXT NOT NULL,
		app_id TEXT UNIQUE,
		upn TEXT UNIQUE COLLATE NOCASE,
		mail_nickname TEXT NOT NULL DEFAULT '',
		password_hash TEXT NOT NULL DEFAULT '',
		directory_roles TEXT NOT NULL DEFAULT '[]',
		created INTEGER NOT NULL);
	CREATE INDEX principals_kind ON principals(kind, display_name);
	CREATE TABLE members (
		group_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		member_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		PRIMARY KEY (group_id, member_id));
	CREATE INDEX members_member ON members(member_id);
	CREATE TABLE credentials (
		id TEXT PRIMARY KEY,
		principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		display_name TEXT NOT NULL DEFAULT '',
		hash TEXT NOT NULL,
		hint TEXT NOT NULL,
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL);
	CREATE TABLE token_keys (id TEXT PRIMARY KEY, sealed BLOB NOT NULL, created INTEGER NOT NULL);
	CREATE TABLE hsms (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL UNIQUE,
		state TEXT NOT NULL,
		domain_id TEXT NOT NULL,
		domain_key BLOB NOT NULL,
		admins TEXT NOT NULL,
		retention_days INTEGER NOT NULL,
		purge_protection INTEGER NOT NULL,
		created INTEGER NOT NULL);
	CREATE TABLE keys (
		hsm TEXT NOT NULL,
		name TEXT NOT NULL COLLATE NOCASE,
		created INTEGER NOT NULL,
		deleted INTEGER NOT NULL DEFAULT 0,
		scheduled_purge INTEGER NOT NULL DEFAULT 0,
		rotation_policy BLOB,
		PRIMARY KEY (hsm, name));
	CREATE TABLE key_versions (
		hsm TEXT NOT NULL,
		name TEXT NOT NULL COLLATE NOCASE,
		version TEXT NOT NULL,
		seq INTEGER NOT NULL,
		kty TEXT NOT NULL,
		ops TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		nbf INTEGER NOT NULL,
		exp INTEGER NOT NULL,
		created INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		tags TEXT NOT NULL,
		exportable INTEGER NOT NULL,
		public BLOB NOT NULL,
		sealed BLOB NOT NULL,
		PRIMARY KEY (hsm, name, version),
		UNIQUE (hsm, name, seq),
		FOREIGN KEY (hsm, name) REFERENCES keys(hsm, name) ON DELETE CASCADE);`,

	// 2: local RBAC.
	`CREATE TABLE role_definitions (
		hsm TEXT NOT NULL,
		id TEXT NOT NULL COLLATE NOCASE,
		name TEXT NOT NULL,
		description TEXT NOT NULL,
		permissions TEXT NOT NULL,
		assignable_scopes TEXT NOT NULL,
		created INTEGER NOT NULL,
		updated INTEGER NOT NULL,
		PRIMARY KEY (hsm, id));
	CREATE TABLE role_assignments (
		hsm TEXT NOT NULL,
		id TEXT NOT NULL COLLATE NOCASE,
		scope TEXT NOT NULL COLLATE NOCASE,
		role_definition_id TEXT NOT NULL COLLATE NOCASE,
		principal_id TEXT NOT NULL,
		created INTEGER NOT NULL,
		valid_from INTEGER NOT NULL DEFAULT 0,
		valid_until INTEGER NOT NULL DEFAULT 0,
		source TEXT NOT NULL DEFAULT 'direct',
		PRIMARY KEY (hsm, id));
	CREATE INDEX role_assignments_role ON role_assignments(hsm, role_definition_id);`,

	// 3: security domains and resource groups.
	`ALTER TABLE hsms ADD COLUMN resource_group TEXT NOT NULL DEFAULT '';
	ALTER TABLE hsms ADD COLUMN exchange_key BLOB NOT NULL DEFAULT x'';
	ALTER TABLE hsms ADD COLUMN exchange_cert BLOB NOT NULL DEFAULT x'';`,

	// 4: storage accounts and diagnostic settings.
	`CREATE TABLE storage_accounts (
		name TEXT PRIMARY KEY COLLATE NOCASE,
		resource_group TEXT NOT NULL,
		blob_endpoint TEXT NOT NULL,
		credential_kind TEXT NOT NULL,
		secret BLOB NOT NULL,
		created INTEGER NOT NULL);
	CREATE TABLE diagnostic_settings (
		hsm TEXT NOT NULL,
		name TEXT NOT NULL COLLATE NOCASE,
		storage_account TEXT NOT NULL,
		enabled INTEGER NOT NULL,
		created INTEGER NOT NULL,
		PRIMARY KEY (hsm, name));`,

	// 5: the control plane.
	`CREATE TABLE objects (
		kind TEXT NOT NULL,
		id TEXT NOT NULL,
		data BLOB NOT NULL,
		PRIMARY KEY (kind, id));
	ALTER TABLE hsms ADD COLUMN location TEXT NOT NULL DEFAULT 'local';
	ALTER TABLE hsms ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
	ALTER TABLE hsms ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;`,

	// 6: HSM names are unique without regard to case, as Azure's are: host
	// routing lower-cases the name, and audit streams are per lower-cased
	// name. caseDuplicates refuses a file that already has such twins.
	`CREATE UNIQUE INDEX hsms_name_nocase ON hsms(name COLLATE NOCASE);`,
	// 7: who created a role assignment: a second administrator's approval
	// does not count through an assignment the requester made.
	`ALTER TABLE role_assignments ADD COLUMN created_by TEXT NOT NULL DEFAULT '';`,
	// 8: leases for background work that runs on one node at a time.
	`CREATE TABLE leases (
		name TEXT PRIMARY KEY,
		holder TEXT NOT NULL,
		expires INTEGER NOT NULL);`,
	// 9: backup and restore jobs, kept over restarts.
	`CREATE TABLE jobs (
		id TEXT PRIMARY KEY,
		hsm TEXT NOT NULL,
		kind TEXT NOT NULL,
		status TEXT NOT NULL,
		details TEXT NOT NULL,
		folder_uri TEXT NOT NULL,
		error_kind TEXT NOT NULL,
		error_code TEXT NOT NULL,
		error_message TEXT NOT NULL,
		started INTEGER NOT NULL,
		ended INTEGER NOT NULL);
	CREATE INDEX jobs_status ON jobs(status, hsm);`,
	// 10: the meta key-value rows become columns: the node settings (one
	// row), the log shippers' delivery cursors, whether an HSM's initial
	// roles were seeded and when a key version's near-expiry notice went
	// out. Every known meta row is carried over; rows of HSMs or versions
	// that no longer exist have nowhere to go and are dropped with the
	// table. The sealed values were base64 text: decodeNodeSecrets turns
	// them into bytes.
	`CREATE TABLE node (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		tenant_id TEXT NOT NULL DEFAULT '',
		subscription_id TEXT NOT NULL DEFAULT '',
		seal TEXT NOT NULL DEFAULT '',
		secret_pepper BLOB NOT NULL DEFAULT x'',
		checkpoint_key BLOB NOT NULL DEFAULT x'',
		bootstrap_admin TEXT NOT NULL DEFAULT '',
		control_plane_seeded INTEGER NOT NULL DEFAULT 0);
	INSERT INTO node(id, tenant_id, subscription_id, seal, secret_pepper, checkpoint_key, bootstrap_admin, control_plane_seeded)
		SELECT 1,
			COALESCE(max(CASE WHEN key = 'tenant' THEN value END), ''),
			COALESCE(max(CASE WHEN key = 'subscription' THEN value END), ''),
			COALESCE(max(CASE WHEN key = 'seal' THEN value END), ''),
			COALESCE(max(CASE WHEN key = 'secretPepper' THEN value END), ''),
			COALESCE(max(CASE WHEN key = 'audit.checkpointKey' THEN value END), ''),
			COALESCE(max(CASE WHEN key = 'bootstrapAdmin' THEN value END), ''),
			count(CASE WHEN key = 'controlPlaneSeeded' THEN 1 END) > 0
		FROM meta;
	CREATE TABLE shipper_cursors (
		hsm TEXT NOT NULL COLLATE NOCASE,
		setting TEXT NOT NULL COLLATE NOCASE,
		delivered INTEGER NOT NULL,
		PRIMARY KEY (hsm, setting));
	INSERT INTO shipper_cursors(hsm, setting, delivered)
		SELECT substr(rest, 1, instr(rest, '.') - 1), substr(rest, instr(rest, '.') + 1), CAST(value AS INTEGER)
		FROM (SELECT substr(key, 17) AS rest, value FROM meta WHERE substr(key, 1, 16) = 'audit.delivered.')
		WHERE instr(rest, '.') > 1
		ON CONFLICT (hsm, setting) DO UPDATE SET delivered = max(delivered, excluded.delivered);
	ALTER TABLE hsms ADD COLUMN roles_seeded INTEGER NOT NULL DEFAULT 0;
	UPDATE hsms SET roles_seeded = 1 WHERE 'rbac.seeded.' || id IN (SELECT key FROM meta);
	ALTER TABLE key_versions ADD COLUMN near_expiry_notified INTEGER NOT NULL DEFAULT 0;
	UPDATE key_versions SET near_expiry_notified = COALESCE(CAST(strftime('%s', m.value) AS INTEGER), 1)
		FROM meta AS m, hsms AS h
		WHERE h.name = key_versions.hsm COLLATE NOCASE AND m.key = 'rotation.notified.' || h.id || '.' || key_versions.version;
	DROP TABLE meta;`,
	// 11: users' TOTP authenticators (secrets sealed by the node seal) and
	// refresh tokens (HMAC-SHA-256 under the pepper).
	`CREATE TABLE authenticators (
		principal_id TEXT PRIMARY KEY REFERENCES principals(id) ON DELETE CASCADE,
		id TEXT NOT NULL,
		sealed BLOB NOT NULL,
		confirmed INTEGER NOT NULL,
		last_step INTEGER NOT NULL,
		created INTEGER NOT NULL);
	CREATE TABLE refresh_tokens (
		id TEXT PRIMARY KEY,
		principal_id TEXT NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		hash TEXT NOT NULL,
		amr TEXT NOT NULL,
		auth_time INTEGER NOT NULL,
		expires INTEGER NOT NULL);
	CREATE INDEX refresh_tokens_principal ON refresh_tokens(principal_id);`,
	// 12: memberships bounded in time (PIM for Groups activations); 0 is
	// no bound.
	`ALTER TABLE members ADD COLUMN since INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE members ADD COLUMN until INTEGER NOT NULL DEFAULT 0;`,
	// 13: the node that runs a job.
	`ALTER TABLE jobs ADD COLUMN node TEXT NOT NULL DEFAULT '';`,
	// 14: assignments by scope (scope is NOCASE), for the checks of a new
	// one among many.
	`CREATE INDEX role_assignments_scope ON role_assignments(hsm, scope);`,
	// 15: a version's secure key release policy (empty: none).
	`ALTER TABLE key_versions ADD COLUMN release_policy BLOB NOT NULL DEFAULT x'';`,
}

// conversions run after the migration of the same number, in its
// transaction, for what SQL cannot express.
var conversions = map[int]func(ctx context.Context, tx *sql.Tx) error{
	10: decodeNodeSecrets,
}

// decodeNodeSecrets turns the sealed pepper and checkpoint key, which
// migration 10 copied as the base64 text meta held, into bytes.
func decodeNodeSecrets(ctx context.Context, tx *sql.Tx) error {
	var pepper, checkpoint string
	if err := tx.QueryRowContext(ctx, `SELECT CAST(secret_pepper AS TEXT), CAST(checkpoint_key AS TEXT) FROM node WHERE id = 1`).
		Scan(&pepper, &checkpoint); err != nil {
		return err
	}
	p, err := base64.StdEncoding.DecodeString(pepper)
	if err != nil {
		return fmt.Errorf("decoding the sealed secret pepper: %w", err)
	}
	c, err := base64.StdEncoding.DecodeString(checkpoint)
	if err != nil {
		return fmt.Errorf("decoding the sealed audit checkpoint key: %w", err)
	}
	_, err = tx.ExecContext(ctx, `UPDATE node SET secret_pepper = ?, checkpoint_key = ? WHERE id = 1`, p, c)
	return err
}

// prechecks run before the migration of the same number (1-based) and stop
// the upgrade with a message an operator can act on, rather than let the
// migration fail on a constraint or change data silently.
var prechecks = map[int]func(ctx context.Context, tx *sql.Tx) error{
	6: caseDuplicates,
}

// caseDuplicates refuses to add the case-insensitive HSM name index when
// two HSMs' names differ only by case. Keyward cannot choose which of them
// to keep: the operator deletes (and purges) all but one with the previous
// version, then upgrades.
func caseDuplicates(ctx context.Context, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT group_concat(name, ', ') FROM hsms GROUP BY lower(name) HAVING count(*) > 1`)
	if err != nil {
		return err
	}
	defer rows.Close()
	var twins []string
	for rows.Next() {
		var names string
		if err := rows.Scan(&names); err != nil {
			return err
		}
		twins = append(twins, "("+names+")")
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(twins) > 0 {
		return fmt.Errorf("HSM names must differ by more than case, and this data directory has %s: "+
			"purge all but one of each with the previous keyward version, then start this one", strings.Join(twins, ", "))
	}
	return nil
}

// migrate applies the migrations the file has not seen yet, each in its own
// transaction together with the new user_version.
func (db *DB) migrate(ctx context.Context) error {
	var have int
	if err := db.writer.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&have); err != nil {
		return fmt.Errorf("sqlite: reading schema version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("sqlite: the database has schema version %d, newer than this binary (%d)", have, len(migrations))
	}
	for v := have; v < len(migrations); v++ {
		tx, err := db.writer.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
		}
		if check := prechecks[v+1]; check != nil {
			if err := check(ctx, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
		}
		if convert := conversions[v+1]; convert != nil {
			if err := convert(ctx, tx); err != nil {
				tx.Rollback()
				return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("sqlite: migration %d: %w", v+1, err)
		}
	}
	return nil
}
