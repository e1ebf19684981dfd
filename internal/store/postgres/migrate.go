package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// migrations are applied in order; the schema version is their count,
// kept in schema_version. A released migration never changes: add a new
// one instead.
//
// Migration 1 is the schema the SQLite store reached with its migration
// 12, with the same meaning:
//
//   - Times are Unix seconds in BIGINT, 0 for "unset" (lease expiries are
//     milliseconds); lists and maps are JSON text, sealed values BYTEA.
//   - Every text column has the "C" collation, so that order and
//     comparison are by bytes, as in SQLite, whatever the database's
//     default collation.
//   - A name SQLite declared COLLATE NOCASE keeps its spelling and gets a
//     generated column (…_nocase, lower() under "C", which folds ASCII
//     only, as NOCASE does) that carries the primary key, the uniqueness
//     and the foreign keys. Queries compare it with fold(name).
var migrations = []string{
	// 1: the whole schema.
	`CREATE TABLE node (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		tenant_id TEXT COLLATE "C" NOT NULL DEFAULT '',
		subscription_id TEXT COLLATE "C" NOT NULL DEFAULT '',
		seal TEXT COLLATE "C" NOT NULL DEFAULT '',
		secret_pepper BYTEA NOT NULL DEFAULT '',
		checkpoint_key BYTEA NOT NULL DEFAULT '',
		bootstrap_admin TEXT COLLATE "C" NOT NULL DEFAULT '',
		control_plane_seeded BOOLEAN NOT NULL DEFAULT false);
	INSERT INTO node(id) VALUES (1);
	CREATE TABLE principals (
		id TEXT COLLATE "C" PRIMARY KEY,
		kind TEXT COLLATE "C" NOT NULL,
		display_name TEXT COLLATE "C" NOT NULL,
		app_id TEXT COLLATE "C" UNIQUE,
		upn TEXT COLLATE "C",
		upn_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(upn)) STORED UNIQUE,
		mail_nickname TEXT COLLATE "C" NOT NULL DEFAULT '',
		password_hash TEXT COLLATE "C" NOT NULL DEFAULT '',
		directory_roles TEXT COLLATE "C" NOT NULL DEFAULT '[]',
		created BIGINT NOT NULL);
	CREATE INDEX principals_kind ON principals(kind, display_name, id);
	CREATE TABLE members (
		group_id TEXT COLLATE "C" NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		member_id TEXT COLLATE "C" NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		since BIGINT NOT NULL DEFAULT 0,
		until BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (group_id, member_id));
	CREATE INDEX members_member ON members(member_id, group_id);
	CREATE TABLE credentials (
		id TEXT COLLATE "C" PRIMARY KEY,
		principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		display_name TEXT COLLATE "C" NOT NULL DEFAULT '',
		hash TEXT COLLATE "C" NOT NULL,
		hint TEXT COLLATE "C" NOT NULL,
		created BIGINT NOT NULL,
		expires BIGINT NOT NULL);
	CREATE INDEX credentials_principal ON credentials(principal_id, created);
	CREATE TABLE token_keys (id TEXT COLLATE "C" PRIMARY KEY, sealed BYTEA NOT NULL, created BIGINT NOT NULL);
	CREATE TABLE authenticators (
		principal_id TEXT COLLATE "C" PRIMARY KEY REFERENCES principals(id) ON DELETE CASCADE,
		id TEXT COLLATE "C" NOT NULL,
		sealed BYTEA NOT NULL,
		confirmed BOOLEAN NOT NULL,
		last_step BIGINT NOT NULL,
		created BIGINT NOT NULL);
	CREATE TABLE refresh_tokens (
		id TEXT COLLATE "C" PRIMARY KEY,
		principal_id TEXT COLLATE "C" NOT NULL REFERENCES principals(id) ON DELETE CASCADE,
		hash TEXT COLLATE "C" NOT NULL,
		amr TEXT COLLATE "C" NOT NULL,
		auth_time BIGINT NOT NULL,
		expires BIGINT NOT NULL);
	CREATE INDEX refresh_tokens_principal ON refresh_tokens(principal_id);
	CREATE INDEX refresh_tokens_expires ON refresh_tokens(expires);
	CREATE TABLE hsms (
		id TEXT COLLATE "C" PRIMARY KEY,
		name TEXT COLLATE "C" NOT NULL UNIQUE,
		name_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED UNIQUE,
		state TEXT COLLATE "C" NOT NULL,
		domain_id TEXT COLLATE "C" NOT NULL,
		domain_key BYTEA NOT NULL,
		admins TEXT COLLATE "C" NOT NULL,
		retention_days INTEGER NOT NULL,
		purge_protection BOOLEAN NOT NULL,
		created BIGINT NOT NULL,
		resource_group TEXT COLLATE "C" NOT NULL DEFAULT '',
		exchange_key BYTEA NOT NULL DEFAULT '',
		exchange_cert BYTEA NOT NULL DEFAULT '',
		location TEXT COLLATE "C" NOT NULL DEFAULT 'local',
		tags TEXT COLLATE "C" NOT NULL DEFAULT '{}',
		deleted BIGINT NOT NULL DEFAULT 0,
		roles_seeded BOOLEAN NOT NULL DEFAULT false);
	CREATE TABLE keys (
		hsm TEXT COLLATE "C" NOT NULL,
		name TEXT COLLATE "C" NOT NULL,
		name_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED,
		created BIGINT NOT NULL,
		deleted BIGINT NOT NULL DEFAULT 0,
		scheduled_purge BIGINT NOT NULL DEFAULT 0,
		rotation_policy BYTEA,
		PRIMARY KEY (hsm, name_nocase));
	CREATE TABLE key_versions (
		hsm TEXT COLLATE "C" NOT NULL,
		name TEXT COLLATE "C" NOT NULL,
		name_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED,
		version TEXT COLLATE "C" NOT NULL,
		seq BIGINT NOT NULL,
		kty TEXT COLLATE "C" NOT NULL,
		ops TEXT COLLATE "C" NOT NULL,
		enabled BOOLEAN NOT NULL,
		nbf BIGINT NOT NULL,
		exp BIGINT NOT NULL,
		created BIGINT NOT NULL,
		updated BIGINT NOT NULL,
		tags TEXT COLLATE "C" NOT NULL,
		exportable BOOLEAN NOT NULL,
		public BYTEA NOT NULL,
		sealed BYTEA NOT NULL,
		near_expiry_notified BIGINT NOT NULL DEFAULT 0,
		PRIMARY KEY (hsm, name_nocase, version),
		UNIQUE (hsm, name_nocase, seq),
		FOREIGN KEY (hsm, name_nocase) REFERENCES keys(hsm, name_nocase) ON DELETE CASCADE);
	CREATE TABLE role_definitions (
		hsm TEXT COLLATE "C" NOT NULL,
		id TEXT COLLATE "C" NOT NULL,
		id_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(id)) STORED,
		name TEXT COLLATE "C" NOT NULL,
		description TEXT COLLATE "C" NOT NULL,
		permissions TEXT COLLATE "C" NOT NULL,
		assignable_scopes TEXT COLLATE "C" NOT NULL,
		created BIGINT NOT NULL,
		updated BIGINT NOT NULL,
		PRIMARY KEY (hsm, id_nocase));
	CREATE TABLE role_assignments (
		hsm TEXT COLLATE "C" NOT NULL,
		id TEXT COLLATE "C" NOT NULL,
		id_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(id)) STORED,
		scope TEXT COLLATE "C" NOT NULL,
		role_definition_id TEXT COLLATE "C" NOT NULL,
		principal_id TEXT COLLATE "C" NOT NULL,
		created BIGINT NOT NULL,
		valid_from BIGINT NOT NULL DEFAULT 0,
		valid_until BIGINT NOT NULL DEFAULT 0,
		source TEXT COLLATE "C" NOT NULL DEFAULT 'direct',
		created_by TEXT COLLATE "C" NOT NULL DEFAULT '',
		PRIMARY KEY (hsm, id_nocase));
	CREATE INDEX role_assignments_role ON role_assignments(hsm, lower(role_definition_id));
	CREATE TABLE storage_accounts (
		name TEXT COLLATE "C" NOT NULL,
		name_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED PRIMARY KEY,
		resource_group TEXT COLLATE "C" NOT NULL,
		blob_endpoint TEXT COLLATE "C" NOT NULL,
		credential_kind TEXT COLLATE "C" NOT NULL,
		secret BYTEA NOT NULL,
		created BIGINT NOT NULL);
	CREATE TABLE diagnostic_settings (
		hsm TEXT COLLATE "C" NOT NULL,
		name TEXT COLLATE "C" NOT NULL,
		name_nocase TEXT COLLATE "C" GENERATED ALWAYS AS (lower(name)) STORED,
		storage_account TEXT COLLATE "C" NOT NULL,
		enabled BOOLEAN NOT NULL,
		created BIGINT NOT NULL,
		PRIMARY KEY (hsm, name_nocase));
	CREATE TABLE shipper_cursors (
		hsm_nocase TEXT COLLATE "C" NOT NULL,
		setting_nocase TEXT COLLATE "C" NOT NULL,
		delivered BIGINT NOT NULL,
		PRIMARY KEY (hsm_nocase, setting_nocase));
	CREATE TABLE objects (
		kind TEXT COLLATE "C" NOT NULL,
		id TEXT COLLATE "C" NOT NULL,
		data BYTEA NOT NULL,
		PRIMARY KEY (kind, id));
	CREATE TABLE leases (
		name TEXT COLLATE "C" PRIMARY KEY,
		holder TEXT COLLATE "C" NOT NULL,
		expires BIGINT NOT NULL);
	CREATE TABLE jobs (
		id TEXT COLLATE "C" PRIMARY KEY,
		hsm TEXT COLLATE "C" NOT NULL,
		kind TEXT COLLATE "C" NOT NULL,
		status TEXT COLLATE "C" NOT NULL,
		details TEXT COLLATE "C" NOT NULL,
		folder_uri TEXT COLLATE "C" NOT NULL,
		error_kind TEXT COLLATE "C" NOT NULL,
		error_code TEXT COLLATE "C" NOT NULL,
		error_message TEXT COLLATE "C" NOT NULL,
		started BIGINT NOT NULL,
		ended BIGINT NOT NULL);
	CREATE INDEX jobs_status ON jobs(status, hsm);`,
	// 2: the node that runs a job.
	`ALTER TABLE jobs ADD COLUMN node TEXT COLLATE "C" NOT NULL DEFAULT '';`,
	// 3: assignments by scope, without regard to case, for the checks of
	// a new one among many.
	`CREATE INDEX role_assignments_scope ON role_assignments(hsm, lower(scope));`,
	// 4: a version's secure key release policy (empty: none).
	`ALTER TABLE key_versions ADD COLUMN release_policy BYTEA NOT NULL DEFAULT ''::bytea;`,
}

// migrateLock is the advisory lock that keeps nodes starting together
// from migrating at once.
const migrateLock = 0x6b657977_6d696772 // "keywmigr"

// migrate applies the migrations the database has not seen yet, each in
// its own transaction together with the new version, under migrateLock.
func (db *DB) migrate(ctx context.Context) error {
	for {
		done, err := db.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

// migrateOne applies the next migration, if any, and reports whether the
// schema is up to date.
func (db *DB) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return false, fmt.Errorf("postgres: migrating: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return false, fmt.Errorf("postgres: migrating: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return false, fmt.Errorf("postgres: migrating: %w", err)
	}
	var have int
	if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0) FROM schema_version`).Scan(&have); err != nil {
		return false, fmt.Errorf("postgres: reading the schema version: %w", err)
	}
	if have > len(migrations) {
		return false, fmt.Errorf("postgres: the database has schema version %d, newer than this binary (%d)", have, len(migrations))
	}
	if have == len(migrations) {
		return true, tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, migrations[have]); err != nil {
		return false, fmt.Errorf("postgres: migration %d: %w", have+1, err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM schema_version`); err != nil {
		return false, fmt.Errorf("postgres: migration %d: %w", have+1, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO schema_version(version) VALUES ($1)`, have+1); err != nil {
		return false, fmt.Errorf("postgres: migration %d: %w", have+1, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("postgres: migration %d: %w", have+1, err)
	}
	return false, nil
}
