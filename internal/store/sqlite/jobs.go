package sqlite

import (
	"context"

	"github.com/keyward/keyward/internal/store"
)

const jobCols = `id, hsm, kind, status, details, folder_uri, error_kind, error_code, error_message, started, ended, node`

// InsertJob implements store.Jobs.
func (t *txn) InsertJob(ctx context.Context, j *store.Job) error {
	t.note(store.ChangeJob, j.HSM, j.ID)
	_, err := t.exec(ctx, `INSERT INTO jobs(`+jobCols+`) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.HSM, j.Kind, j.Status, j.Details, j.FolderURI, j.ErrorKind, j.ErrorCode, j.ErrorMessage, unix(j.Start), unix(j.End), j.Node)
	return err
}

// UpdateJob implements store.Jobs.
func (t *txn) UpdateJob(ctx context.Context, j *store.Job) error {
	t.note(store.ChangeJob, j.HSM, j.ID)
	return mustAffect(t.exec(ctx, `UPDATE jobs SET status = ?, details = ?, folder_uri = ?, error_kind = ?, error_code = ?,
		error_message = ?, ended = ? WHERE id = ?`,
		j.Status, j.Details, j.FolderURI, j.ErrorKind, j.ErrorCode, j.ErrorMessage, unix(j.End), j.ID))
}

func scanJob(row scanner) (*store.Job, error) {
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
	return scanJob(t.queryRow(ctx, `SELECT `+jobCols+` FROM jobs WHERE id = ? AND hsm = ?`, id, hsm))
}

// RunningJobs implements store.Jobs.
func (t *txn) RunningJobs(ctx context.Context, hsm string) ([]*store.Job, error) {
	rows, err := t.query(ctx, `SELECT `+jobCols+` FROM jobs WHERE status = ? AND (? = '' OR hsm = ?) ORDER BY started, id`,
		store.JobRunning, hsm, hsm)
	if err != nil {
		return nil, notFound(err)
	}
	defer rows.Close()
	var out []*store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
