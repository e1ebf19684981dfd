// Package backup makes full backups of an HSM into a blob container and
// restores them, whole or one key at a time, as long-running jobs.
//
// A backup holds every key with all its versions (the material still
// sealed as stored), deleted keys, rotation policies, custom role
// definitions and role assignments. It is sealed again under the HSM's
// domain key, bound to its security domain, and written as one folder
// (mhsm-{name}-{yyyymmddhhmmss}) in the container: a manifest and the
// sealed blob. So a backup restores into the same HSM, or into one
// recovered from the same security domain, and into no other.
//
// Backups are written and read as streams (format.StreamVersion, see
// stream.go): memory holds a few blocks of one, never the whole. Backups
// of format 1, sealed whole, still restore.
package backup

import (
	"context"
	"crypto/fips140"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/url"
	"os"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/backup/format"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/egress"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Job statuses, as Azure reports them.
const (
	InProgress = "InProgress"
	Succeeded  = "Succeeded"
	Failed     = "Failed"
)

// Job is a backup or restore in progress or done.
type Job struct {
	ID        string
	Kind      string // "backup", "restore" or "selective"
	HSM       string
	Status    string
	Details   string
	Error     error
	Start     time.Time
	End       time.Time
	FolderURI string // the backup folder (backups)
	Node      string // the cluster node that runs it
}

// Target is a blob container and the SAS token that opens it.
type Target struct {
	ContainerURI string
	SASToken     string
}

// Errors.
var (
	ErrBusy        = fault.New(fault.Conflict, "Conflict", "a backup or restore of this HSM is already running")
	ErrJobNotFound = fault.New(fault.NotFound, "NotFound", "no such backup or restore job")
	ErrBadBackup   = fault.New(fault.Invalid, "BadParameter", "the backup is not valid for this HSM")
)

// Service runs jobs.
type Service struct {
	store    store.Store
	registry *domain.Registry
	now      func() time.Time
	node     string // runs the jobs it begins

	egress egress.Policy // guards the storage URLs that callers name

	jobTimeout  time.Duration // see the constant
	uploadBlock int           // see the constant
}

// NewService returns the backup service of the cluster node named node.
// The caches of keys and roles learn what a restore replaced from the
// store's change feed. Jobs are kept in the store, so any node reports
// them: see FailInterrupted and jobLease. Storage URLs that callers name
// go through egress.
func NewService(s store.Store, r *domain.Registry, now func() time.Time, egress egress.Policy, node string) *Service {
	return &Service{store: s, registry: r, now: now, egress: egress, node: node, jobTimeout: jobTimeout, uploadBlock: uploadBlock}
}

// A running job holds the lease jobLease(id), renewed by its node every
// jobLeaseRenew; a job whose lease lapsed lost its node (killed, cut off)
// and is failed by the next job begun for its HSM on any node, so one
// dead node cannot block an HSM's backups.
const (
	jobLeaseTTL   = 15 * time.Second
	jobLeaseRenew = jobLeaseTTL / 3
)

func jobLease(id string) string { return "backup-job/" + id }

// hold renews j's lease until stop is closed, then releases it.
func (s *Service) hold(j Job, stop <-chan struct{}) {
	t := time.NewTicker(jobLeaseRenew)
	defer t.Stop()
	ctx := context.Background()
	for {
		select {
		case <-stop:
			s.store.Update(ctx, func(tx store.Tx) error { return tx.ReleaseLease(ctx, jobLease(j.ID), s.node) })
			return
		case <-t.C:
			store.TakeLease(ctx, s.store, jobLease(j.ID), s.node, s.now(), jobLeaseTTL)
		}
	}
}

// run runs a begun job's work in the background, holding its lease, and
// records its outcome.
func (s *Service) run(ctx context.Context, j Job, work func(context.Context) (string, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.jobTimeout)
		defer cancel()
		stop := make(chan struct{})
		held := make(chan struct{})
		go func() { s.hold(j, stop); close(held) }()
		folder, err := func() (folder string, err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("backup: %s job %s panicked: %v", j.Kind, j.ID, p)
				}
			}()
			return work(ctx)
		}()
		s.finish(ctx, j, folder, err)
		close(stop)
		<-held
	}()
}

// jobTimeout bounds a job: storage that the caller names, and that answers
// a byte at a time, must not keep an HSM's backups and restores busy for
// ever. A backup of a million keys takes a few minutes.
const jobTimeout = time.Hour

// storageTryTimeout bounds each request to the storage, a 4 MiB block
// included.
const storageTryTimeout = 2 * time.Minute

// manifest is written beside the sealed backup; it holds nothing secret.
type manifest struct {
	Format   int    `json:"format"`
	HSM      string `json:"hsm"`
	DomainID string `json:"domainId"`
	Created  string `json:"created"`
	Keys     int    `json:"keys"`
	Size     int    `json:"size"`
	SHA256   string `json:"sha256"`
}

// content is the plaintext of a backup: its records, in package format,
// are never the store's structs, so a backup outlives their renaming.
type content = format.Full

const (
	manifestName = "manifest.json"
	backupName   = "backup.kwb"
)

func backupAAD(domainID string) []byte { return []byte("keyward full backup\x00" + domainID) }

// container returns a client of t's container, through the egress
// policy: a Backup or Restore User names the URL, and must not be able to
// aim the server at its own network.
func (s *Service) container(t Target) (*container.Client, error) {
	u, err := url.Parse(t.ContainerURI)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || strings.Trim(u.Path, "/") == "" {
		return nil, fault.Invalidf("storageResourceUri must be the URL of a blob container")
	}
	if err := s.egress.CheckURL(t.ContainerURI); err != nil {
		return nil, err
	}
	full := strings.TrimSuffix(t.ContainerURI, "/")
	if t.SASToken != "" {
		full += "?" + strings.TrimPrefix(t.SASToken, "?")
	}
	opts := s.egress.ClientOptions()
	opts.Retry.TryTimeout = storageTryTimeout
	return container.NewClientWithNoCredential(full, &container.ClientOptions{ClientOptions: opts})
}

// ErrInterrupted is the failure of a job that was running when the
// server stopped.
// ErrFIPS refuses full backups and restores in FIPS 140-3 mode: a backup is
// an age file, whose payload is ChaCha20-Poly1305, outside Go's FIPS 140-3
// module. A key's own backup (AES-256-GCM under the domain key) works.
var ErrFIPS = fault.New(fault.Invalid, "BadParameter",
	"Full HSM backup and restore are not available in FIPS 140-3 mode: a backup is an age file (ChaCha20-Poly1305), outside Go's FIPS 140-3 module. Back keys up one by one (az keyvault key backup), which FIPS mode allows.")

var ErrInterrupted = fault.New(fault.Unavailable, "JobInterrupted", "the server stopped while this job was running: start it again")

// begin registers a job, refusing a second one for the same HSM; the
// check and the insert are one transaction.
func (s *Service) begin(ctx context.Context, kind, hsm string) (Job, error) {
	j := Job{ID: strings.ReplaceAll(uuid.NewString(), "-", ""), Kind: kind, HSM: hsm, Status: InProgress,
		Details: fmt.Sprintf("%s is in progress", kind), Start: s.now().UTC().Truncate(time.Second), Node: s.node}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		running, err := tx.RunningJobs(ctx, hsm)
		if err != nil {
			return err
		}
		for _, r := range running {
			if r.Node == s.node {
				return ErrBusy
			}
			// Taking the lease of another's job succeeds only when its
			// node stopped renewing it: that job died with its node.
			orphaned, err := tx.TakeLease(ctx, jobLease(r.ID), s.node, s.now(), jobLeaseTTL)
			if err != nil {
				return err
			}
			if !orphaned {
				return ErrBusy
			}
			dead := fromRecord(r)
			dead.Status, dead.Error, dead.Details, dead.End = Failed, ErrInterrupted, fmt.Sprintf("%s failed", dead.Kind), s.now().UTC()
			if err := tx.UpdateJob(ctx, toRecord(dead)); err != nil {
				return err
			}
			if err := tx.ReleaseLease(ctx, jobLease(r.ID), s.node); err != nil {
				return err
			}
		}
		if _, err := tx.TakeLease(ctx, jobLease(j.ID), s.node, s.now(), jobLeaseTTL); err != nil {
			return err
		}
		return tx.InsertJob(ctx, toRecord(j))
	})
	return j, err
}

func (s *Service) finish(ctx context.Context, j Job, folder string, err error) {
	j.End = s.now().UTC()
	if err != nil {
		j.Status, j.Error, j.Details = Failed, err, fmt.Sprintf("%s failed", j.Kind)
	} else {
		j.Status, j.Details = Succeeded, fmt.Sprintf("%s completed", j.Kind)
		if folder != "" {
			j.FolderURI = folder
		}
	}
	// The job's outcome must not be lost to a cancelled request context.
	ctx = context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		werr := s.store.Update(ctx, func(tx store.Tx) error {
			// A job another node failed (its lease lapsed: this node was
			// cut off) keeps that verdict.
			if r, err := tx.GetJob(ctx, j.HSM, j.ID); err != nil || r.Status != store.JobRunning {
				return err
			}
			return tx.UpdateJob(ctx, toRecord(j))
		})
		if werr == nil || attempt == 4 {
			return
		}
		time.Sleep(100 * time.Millisecond << attempt)
	}
}

// toRecord and fromRecord convert a job to and from its stored form. A
// failure keeps its kind, code and client-safe message, so it is reported
// alike after a restart; an internal failure keeps none of its text.
func toRecord(j Job) *store.Job {
	r := &store.Job{ID: j.ID, HSM: j.HSM, Kind: j.Kind, Status: j.Status, Details: j.Details, FolderURI: j.FolderURI, Start: j.Start, End: j.End,
		Node: j.Node}
	if j.Error != nil {
		r.ErrorKind = string(fault.Internal)
		if fe, ok := fault.As(j.Error); ok && fe.Kind != fault.Internal {
			r.ErrorKind, r.ErrorCode, r.ErrorMessage = string(fe.Kind), fe.Code, fe.Msg
		}
	}
	return r
}

func fromRecord(r *store.Job) Job {
	j := Job{ID: r.ID, HSM: r.HSM, Kind: r.Kind, Status: r.Status, Details: r.Details, FolderURI: r.FolderURI, Start: r.Start, End: r.End,
		Node: r.Node}
	if r.ErrorKind != "" {
		j.Error = fault.New(fault.Kind(r.ErrorKind), r.ErrorCode, r.ErrorMessage)
	}
	return j
}

// Job returns a job of hsm.
func (s *Service) Job(ctx context.Context, hsm, id string) (Job, error) {
	var r *store.Job
	err := s.store.View(ctx, func(tx store.Tx) (err error) { r, err = tx.GetJob(ctx, hsm, id); return err })
	if errors.Is(err, store.ErrNotFound) {
		return Job{}, ErrJobNotFound
	}
	if err != nil {
		return Job{}, err
	}
	return fromRecord(r), nil
}

// FailInterrupted marks the jobs this node was running when it stopped
// (and those of a version before node names) as failed with
// ErrInterrupted: their goroutines died with it. Call it once at start,
// before any job begins. Other nodes' jobs are theirs, or failed through
// their lapsed lease (see jobLease).
func (s *Service) FailInterrupted(ctx context.Context) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		running, err := tx.RunningJobs(ctx, "")
		if err != nil {
			return err
		}
		for _, r := range running {
			if r.Node != s.node && r.Node != "" {
				continue // another node's: see jobLease
			}
			j := fromRecord(r)
			j.Status, j.Error, j.Details, j.End = Failed, ErrInterrupted, fmt.Sprintf("%s failed", j.Kind), s.now().UTC()
			if err := tx.UpdateJob(ctx, toRecord(j)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Wait blocks until a job ends (for tests and the CLI's in-process use).
func (s *Service) Wait(ctx context.Context, hsm, id string) (Job, error) {
	for {
		j, err := s.Job(ctx, hsm, id)
		if err != nil || j.Status != InProgress {
			return j, err
		}
		select {
		case <-ctx.Done():
			return j, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartBackup begins a full backup of h into t and returns its job.
func (s *Service) StartBackup(ctx context.Context, h *domain.HSM, t Target) (Job, error) {
	if fips140.Enforced() {
		return Job{}, ErrFIPS
	}
	c, err := s.container(t)
	if err != nil {
		return Job{}, err
	}
	j, err := s.begin(ctx, "backup", h.Name)
	if err != nil {
		return Job{}, err
	}
	s.run(ctx, j, func(ctx context.Context) (string, error) { return s.backup(ctx, h, c, t) })
	return j, nil
}

func (s *Service) backup(ctx context.Context, h *domain.HSM, c *container.Client, t Target) (string, error) {
	now := s.now().UTC()
	folder := fmt.Sprintf("mhsm-%s-%s", h.Name, now.Format("20060102150405"))

	// The store is read in one transaction (a consistent copy) and
	// streamed, sealed, into a local file; the upload follows once the
	// transaction ended, so storage that stalls holds no store connection.
	// Memory holds a few blocks, never the backup.
	f, err := tempFile()
	if err != nil {
		return "", err
	}
	defer f.Close()
	sum, size := sha256.New(), &counter{}
	var end format.End
	err = s.store.View(ctx, func(tx store.Tx) (err error) {
		end, err = writeStream(ctx, tx, h, io.MultiWriter(f, sum, size))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("backup: reading %s: %w", h.Name, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	_, err = c.NewBlockBlobClient(folder+"/"+backupName).UploadStream(ctx, f,
		&blockblob.UploadStreamOptions{BlockSize: int64(s.uploadBlock), Concurrency: uploadConcurrency})
	if err != nil {
		return "", storageError("writing the backup", err)
	}
	m, _ := json.Marshal(manifest{Format: format.StreamVersion, HSM: h.Name, DomainID: h.DomainID, Created: now.Format(time.RFC3339),
		Keys: end.Keys, Size: size.n, SHA256: hex.EncodeToString(sum.Sum(nil))})
	if _, err := c.NewBlockBlobClient(folder+"/"+manifestName).UploadBuffer(ctx, m, nil); err != nil {
		return "", storageError("writing the backup manifest", err)
	}
	return strings.TrimSuffix(t.ContainerURI, "/") + "/" + folder, nil
}

// tempFile returns an unnamed temporary file: gone with its descriptor,
// even after a crash. It holds backups as stored: sealed.
func tempFile() (*os.File, error) {
	f, err := os.CreateTemp("", "keyward-backup-*")
	if err != nil {
		return nil, fmt.Errorf("backup: a temporary file: %w", err)
	}
	os.Remove(f.Name())
	return f, nil
}

// The upload holds at most uploadBlock × uploadConcurrency of the backup
// in memory.
const (
	uploadBlock       = 4 << 20
	uploadConcurrency = 2
)

type counter struct{ n int }

func (c *counter) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// storageError turns a storage failure into a message for the caller.
func storageError(doing string, err error) error {
	switch {
	case bloberror.HasCode(err, bloberror.AuthenticationFailed, bloberror.AuthorizationFailure, bloberror.AuthorizationPermissionMismatch):
		return fault.Errorf(fault.Forbidden, "Forbidden", "%s: the storage refused the SAS token", doing)
	case bloberror.HasCode(err, bloberror.ContainerNotFound):
		return fault.Errorf(fault.Invalid, "BadParameter", "%s: the container does not exist", doing)
	case bloberror.HasCode(err, bloberror.BlobNotFound):
		return fault.Errorf(fault.Invalid, "BadParameter", "%s: the backup folder does not exist or is incomplete", doing)
	}
	return fmt.Errorf("backup: %s: %w", doing, err)
}

// maxManifest bounds the manifest read: it is a few hundred bytes.
const maxManifest = 64 << 10

// maxBackup bounds the sealed backup a restore reads. A stream backup
// (format 2) is authenticated as it is read, so only a backup this HSM's
// domain sealed is ever read whole; a format 1 backup is read into memory
// before anything can be checked, so it is bounded far lower (the format
// 1 writer built backups whole in memory: 100,000 keys made 105 MiB).
const (
	maxBackup  = 64 << 30
	maxFormat1 = 256 << 20
)

// restore reads a backup folder of the container and applies it to h:
// all of it, or the key only.
func (s *Service) restore(ctx context.Context, h *domain.HSM, c *container.Client, folder, only string) error {
	folder = strings.Trim(folder, "/")
	if folder == "" || strings.Contains(folder, "..") {
		return fault.Invalidf("folderToRestore must name a backup folder")
	}
	download := func(name string) (io.ReadCloser, error) {
		resp, err := c.NewBlobClient(folder+"/"+name).DownloadStream(ctx, nil)
		if err != nil {
			return nil, storageError("reading the backup", err)
		}
		return resp.Body, nil
	}
	body, err := download(manifestName)
	if err != nil {
		return err
	}
	mb, err := io.ReadAll(io.LimitReader(body, maxManifest))
	body.Close()
	if err != nil {
		return storageError("reading the backup", err)
	}
	m, err := openManifest(h, mb)
	if err != nil {
		return err
	}
	if body, err = download(backupName); err != nil {
		return err
	}
	defer body.Close()
	if m.Format == format.Version {
		if m.Size > maxFormat1 {
			return ErrBadBackup.With("a format 1 backup over 256 MiB is not restored")
		}
		sealed, err := io.ReadAll(io.LimitReader(body, int64(m.Size)+1))
		if err != nil {
			return storageError("reading the backup", err)
		}
		b, err := openBackup(h, mb, sealed)
		if err != nil {
			return err
		}
		return s.apply(ctx, h, recordsOf(b), only)
	}
	spooled, err := spool(body, m, h)
	if err != nil {
		return err
	}
	defer spooled.Close()
	return s.apply(ctx, h, readStream(spooled, h), only)
}

// spool copies a sealed backup into an unnamed temporary file, so that
// memory holds none of it and the restore's transaction reads local disk
// rather than the network. The copy is opened with h's domain key as it
// is written: a blob that another domain sealed, or no domain, is refused
// at its header, and an altered one at the first chunk that does not
// authenticate, without the rest being read. At the end the whole must
// match its manifest.
func spool(body io.Reader, m manifest, h *domain.HSM) (*os.File, error) {
	f, err := tempFile()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	src := &readErr{r: io.LimitReader(body, int64(m.Size)+1)}
	sum, size := sha256.New(), &counter{}
	copied := io.TeeReader(src, io.MultiWriter(f, sum, size))
	plain, err := age.Decrypt(copied, domainRecipient{h})
	if err == nil {
		_, err = io.Copy(io.Discard, plain)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, copied) // what follows the sealed stream, if anything
	}
	switch {
	case src.err != nil:
		return nil, storageError("reading the backup", src.err)
	case errors.Is(err, age.ErrIncorrectIdentity):
		return nil, errNotOurs
	case err != nil:
		return nil, errDamaged
	case size.n != m.Size || hex.EncodeToString(sum.Sum(nil)) != m.SHA256:
		return nil, ErrBadBackup.With("the backup is truncated or altered (it does not match its manifest)")
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("backup: spooling: %w", err)
	}
	ok = true
	return f, nil
}

// readErr keeps the error of the reader it wraps, other than io.EOF, so
// that a storage failure is told from a damaged backup.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// openManifest checks a backup's manifest, read from storage that the
// caller named.
func openManifest(h *domain.HSM, mb []byte) (manifest, error) {
	var m manifest
	if err := json.Unmarshal(mb, &m); err != nil || (m.Format != format.Version && m.Format != format.StreamVersion) ||
		m.Size <= 0 || m.Size > maxBackup {
		return m, ErrBadBackup.With("the backup manifest is not valid")
	}
	if m.DomainID != h.DomainID {
		return m, ErrBadBackup.With("the backup was made under another security domain: it restores only into an HSM holding that domain")
	}
	return m, nil
}

// openBackup opens a format 1 backup: its content sealed whole under h's
// domain key. Manifest and content come from storage that the caller
// named, so neither is trusted.
func openBackup(h *domain.HSM, mb, sealed []byte) (*content, error) {
	m, err := openManifest(h, mb)
	if err != nil {
		return nil, err
	}
	if m.Format != format.Version {
		return nil, ErrBadBackup.With("the backup manifest is not valid")
	}
	sum := sha256.Sum256(sealed)
	if len(sealed) != m.Size || hex.EncodeToString(sum[:]) != m.SHA256 {
		return nil, ErrBadBackup.With("the backup is truncated or altered (it does not match its manifest)")
	}
	plain, err := h.Key.Decrypt(sealed, backupAAD(h.DomainID))
	if err != nil {
		return nil, errNotOurs
	}
	defer clear(plain)
	var b content
	if err := json.Unmarshal(plain, &b); err != nil || b.Format != format.Version || b.DomainID != h.DomainID {
		return nil, ErrBadBackup
	}
	return &b, nil
}

// recordsOf yields a format 1 backup's content in the order a stream holds
// it.
func recordsOf(b *content) iter.Seq2[format.Record, error] {
	return func(yield func(format.Record, error) bool) {
		for i := range b.Roles {
			if !yield(format.Record{Role: &b.Roles[i]}, nil) {
				return
			}
		}
		for i := range b.Assignments {
			if !yield(format.Record{Assignment: &b.Assignments[i]}, nil) {
				return
			}
		}
		for i := range b.Keys {
			if !yield(format.Record{Key: &b.Keys[i]}, nil) {
				return
			}
		}
		for i := range b.Versions {
			if !yield(format.Record{Version: &b.Versions[i]}, nil) {
				return
			}
		}
	}
}

// StartRestore begins replacing h's keys and roles with a backup's.
func (s *Service) StartRestore(ctx context.Context, h *domain.HSM, t Target, folder string) (Job, error) {
	return s.startRestore(ctx, "restore", h, t, folder, "")
}

// StartSelectiveRestore begins restoring one key (all its versions) from a
// backup. The key must not exist in h, live or deleted.
func (s *Service) StartSelectiveRestore(ctx context.Context, h *domain.HSM, t Target, folder, key string) (Job, error) {
	return s.startRestore(ctx, "selective key restore", h, t, folder, key)
}

func (s *Service) startRestore(ctx context.Context, kind string, h *domain.HSM, t Target, folder, key string) (Job, error) {
	if fips140.Enforced() {
		return Job{}, ErrFIPS
	}
	c, err := s.container(t)
	if err != nil {
		return Job{}, err
	}
	if strings.Trim(folder, "/") == "" {
		return Job{}, fault.Invalidf("the backup folder is required")
	}
	j, err := s.begin(ctx, kind, h.Name)
	if err != nil {
		return Job{}, err
	}
	s.run(ctx, j, func(ctx context.Context) (string, error) { return "", s.restore(ctx, h, c, folder, key) })
	return j, nil
}

// apply writes a backup's records into the store in one transaction: all
// of them (replacing the HSM's keys and roles), or one key's. An error
// from records, such as a stream cut short, rolls all of it back.
func (s *Service) apply(ctx context.Context, h *domain.HSM, records iter.Seq2[format.Record, error], only string) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		if err := sameHSM(ctx, tx, h); err != nil {
			return err
		}
		if only == "" {
			if err := clearHSM(ctx, tx, h.Name); err != nil {
				return err
			}
		}
		found := false
		for rec, err := range records {
			if err != nil {
				return err
			}
			switch {
			case rec.Role != nil && only == "":
				r := rec.Role.Store()
				r.HSM = h.Name
				err = tx.PutRoleDefinition(ctx, r)
			case rec.Assignment != nil && only == "":
				a := rec.Assignment.Store()
				a.HSM = h.Name
				err = tx.InsertRoleAssignment(ctx, a)
			case rec.Key != nil && (only == "" || strings.EqualFold(rec.Key.Name, only)):
				found = true
				if only != "" {
					if err := keyAbsent(ctx, tx, h.Name, rec.Key.Name); err != nil {
						return err
					}
				}
				k := rec.Key.Store()
				k.HSM = h.Name
				err = tx.PutKey(ctx, &k)
			case rec.Version != nil && (only == "" || strings.EqualFold(rec.Version.Name, only)):
				v := rec.Version.Store()
				v.HSM = h.Name
				err = tx.InsertKeyVersion(ctx, &v)
			}
			if err != nil {
				return err
			}
		}
		if only != "" && !found {
			return fault.Errorf(fault.NotFound, "KeyNotFound", "the backup holds no key named %s", only)
		}
		return nil
	})
}

// ErrHSMReplaced fails a job whose HSM was deleted, or purged and made
// again under its name, while the job ran: the job's HSM is gone, and
// what it read or would write belongs to no other.
var ErrHSMReplaced = fault.New(fault.Conflict, "Conflict", "the HSM was deleted or replaced while this job ran")

// sameHSM checks, in the job's transaction, that h is still the HSM of its
// name: the same id and security domain, not deleted.
func sameHSM(ctx context.Context, tx store.Tx, h *domain.HSM) error {
	r, err := tx.GetHSM(ctx, h.Name)
	if errors.Is(err, store.ErrNotFound) {
		return ErrHSMReplaced
	}
	if err != nil {
		return err
	}
	if r.ID != h.ID || r.DomainID != h.DomainID || !r.Deleted.IsZero() {
		return ErrHSMReplaced
	}
	return nil
}

// keyAbsent refuses a selective restore over a key that exists.
func keyAbsent(ctx context.Context, tx store.Tx, hsm, name string) error {
	_, err := tx.GetKey(ctx, hsm, name)
	if err == nil {
		return fault.Errorf(fault.Conflict, "Conflict", "a key named %s exists in this HSM (live or deleted): purge it before restoring it", name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	return err
}

// clearHSM removes an HSM's keys, custom roles and assignments.
func clearHSM(ctx context.Context, tx store.Tx, hsm string) error {
	for _, deleted := range []bool{false, true} {
		for {
			items, err := tx.ListKeys(ctx, hsm, deleted, "", 500)
			if err != nil {
				return err
			}
			if len(items) == 0 {
				break
			}
			for _, it := range items {
				if err := tx.PurgeKey(ctx, hsm, it.Key.Name); err != nil {
					return err
				}
			}
		}
	}
	assignments, err := tx.ListRoleAssignments(ctx, hsm)
	if err != nil {
		return err
	}
	for _, a := range assignments {
		if err := tx.DeleteRoleAssignment(ctx, hsm, a.ID); err != nil {
			return err
		}
	}
	roles, err := tx.ListRoleDefinitions(ctx, hsm)
	if err != nil {
		return err
	}
	for _, r := range roles {
		if err := tx.DeleteRoleDefinition(ctx, hsm, r.ID); err != nil {
			return err
		}
	}
	return nil
}
