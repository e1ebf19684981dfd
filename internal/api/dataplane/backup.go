package dataplane

import (
	"errors"
	"net/http"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/backup"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/rbac"
)

// Wire models of the full backup and restore API.

type sasTokenParameter struct {
	StorageResourceURI string `json:"storageResourceUri"`
	Token              string `json:"token"`
	UseManagedIdentity bool   `json:"useManagedIdentity"`
}

type restoreParameters struct {
	SASTokenParameters *sasTokenParameter `json:"sasTokenParameters"`
	FolderToRestore    string             `json:"folderToRestore"`
	Folder             string             `json:"folder"` // selective key restore's name for it
}

type jobError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type jobStatus struct {
	Status        string    `json:"status"`
	StatusDetails string    `json:"statusDetails"`
	Error         *jobError `json:"error"`
	StartTime     *int64    `json:"startTime"`
	EndTime       int64     `json:"endTime"`
	JobID         string    `json:"jobId"`
	FolderURI     string    `json:"azureStorageBlobContainerUri,omitempty"`
}

func backupOperations() []operation {
	ops := []operation{
		op("BackupCreate", http.MethodPost, path("backup"), rbac.BackupStart, hsmScope, (*API).startBackup),
		op("BackupStatus", http.MethodGet, path("backup", "{name}", "pending"), rbac.BackupStatus, hsmScope, (*API).backupStatus),
		op("RestoreCreate", http.MethodPut, path("restore"), rbac.RestoreStart, hsmScope, (*API).startRestore),
		op("RestoreStatus", http.MethodGet, path("restore", "{name}", "pending"), rbac.RestoreStatus, hsmScope, (*API).restoreStatus),
		op("SelectiveKeyRestore", http.MethodPut, path("keys", "{name}", "restore"), rbac.RestoreStart, hsmScope, (*API).startSelectiveRestore),
	}
	return ops
}

func (p *sasTokenParameter) target() (backup.Target, error) {
	if p == nil || p.StorageResourceURI == "" {
		return backup.Target{}, fault.Invalidf("storageResourceUri (the blob container URL) is required")
	}
	if p.UseManagedIdentity {
		return backup.Target{}, fault.Invalidf("useManagedIdentity is not supported yet: give a SAS token")
	}
	if p.Token == "" {
		return backup.Target{}, fault.Invalidf("token (a SAS token for the container) is required")
	}
	return backup.Target{ContainerURI: p.StorageResourceURI, SASToken: p.Token}, nil
}

func (c *call) job(j backup.Job, pending string, st int) error {
	out := jobStatus{Status: j.Status, StatusDetails: j.Details, JobID: j.ID, StartTime: unixPtr(j.Start), FolderURI: j.FolderURI}
	if !j.End.IsZero() {
		out.EndTime = j.End.Unix()
	}
	if j.Error != nil {
		_, code, msg := httpx.Classify(j.Error)
		out.Error = &jobError{Code: code, Message: msg}
	}
	if st == http.StatusAccepted {
		c.async(pending + "/" + j.ID + "/pending")
	}
	return c.status(st, out)
}

func (a *API) startBackup(c *call) error {
	var req sasTokenParameter
	if err := c.readJSON(&req); err != nil {
		return err
	}
	t, err := req.target()
	if err != nil {
		return err
	}
	j, err := a.backups.StartBackup(c.ctx, c.hsm, t)
	if err != nil {
		return err
	}
	return c.job(j, "backup", http.StatusAccepted)
}

func (a *API) startRestore(c *call) error {
	var req restoreParameters
	if err := c.readJSON(&req); err != nil {
		return err
	}
	t, err := req.SASTokenParameters.target()
	if err != nil {
		return err
	}
	j, err := a.backups.StartRestore(c.ctx, c.hsm, t, req.FolderToRestore)
	if err != nil {
		return err
	}
	return c.job(j, "restore", http.StatusAccepted)
}

func (a *API) startSelectiveRestore(c *call) error {
	var req restoreParameters
	if err := c.readJSON(&req); err != nil {
		return err
	}
	t, err := req.SASTokenParameters.target()
	if err != nil {
		return err
	}
	folder := req.Folder
	if folder == "" {
		folder = req.FolderToRestore
	}
	j, err := a.backups.StartSelectiveRestore(c.ctx, c.hsm, t, folder, c.name)
	if err != nil {
		return err
	}
	return c.job(j, "restore", http.StatusAccepted)
}

func (a *API) jobStatus(c *call, kinds ...string) error {
	j, err := a.backups.Job(c.ctx, c.hsm.Name, c.name)
	if err == nil {
		for _, k := range kinds {
			if j.Kind == k {
				return c.job(j, "", http.StatusOK)
			}
		}
		err = backup.ErrJobNotFound
	}
	if errors.Is(err, backup.ErrJobNotFound) {
		return backup.ErrJobNotFound.With("no job %s", c.name)
	}
	return err
}

func (a *API) backupStatus(c *call) error { return a.jobStatus(c, "backup") }

func (a *API) restoreStatus(c *call) error {
	return a.jobStatus(c, "restore", "selective key restore")
}
