package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keyward/keyward/internal/audit"
	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/store"
)

// record writes the audit record of a finished request. It reads only the
// request line, headers that identify the client, the status and what the
// pipeline learned (caller, operation, decision): never a body.
func (s *Server) record(r *http.Request, info *requestInfo, status int, start time.Time) {
	e := &audit.Event{
		TenantID:         s.dir.TenantID(),
		Time:             start.UTC().Format(audit.TimeLayout),
		OperationVersion: r.URL.Query().Get("api-version"),
		Category:         audit.Category,
		ResultType:       audit.ResultType(status),
		ResultSignature:  http.StatusText(status),
		HTTPStatusCode:   status,
		DurationMs:       time.Since(start).Milliseconds(),
		CallerIPAddress:  r.RemoteAddr,
		ClientInfo:       capField(r.UserAgent(), maxRecordedField),
		CorrelationID:    capField(r.Header.Get("x-ms-client-request-id"), maxRecordedField),
		RequestURI:       capField(recordedURI(r, s.recordedBase(info)), maxRecordedField),
		OperationName:    info.rec.Operation,
	}
	e.OperationVersion = capField(e.OperationVersion, 64)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		e.CallerIPAddress = host
	}
	if c := info.caller; c != nil {
		e.Identity = &audit.Identity{Claim: audit.Claims{ObjectID: c.ObjectID, AppID: c.AppID, UPN: c.UPN, TenantID: c.TenantID}}
	}
	rec := &info.rec
	e.Properties = audit.Properties{Key: capField(rec.Key, maxRecordedField), Action: rec.Action, Scope: capField(rec.Scope, maxRecordedField),
		Challenge: rec.Challenge}
	if d := rec.Decision; d != nil {
		e.Properties.Authorization = &audit.Authorization{Decision: "Denied"}
		if d.Allowed {
			e.Properties.Authorization = &audit.Authorization{Decision: "Allowed", RoleAssignmentID: d.AssignmentID, RoleDefinitionID: d.RoleID}
		}
	}
	stream := audit.TenantStream
	if info.hsm != "" {
		stream = audit.StreamOf(info.hsm)
		e.ResourceID = s.hsmResourceID(r, info.hsm)
		e.Properties.PoolType, e.Properties.SKUFamily, e.Properties.SKUName = "M-HSM", "B", "Standard_B1"
		if e.OperationName == "" {
			e.OperationName = "Unknown"
		}
	} else {
		e.ResourceID = "/TENANTS/" + strings.ToUpper(s.dir.TenantID())
		if e.OperationName == "" {
			e.OperationName = r.Method + " (no route)"
		}
		if rec.SignInSubject != "" && status >= 400 {
			e.Properties.SignInSubject = capField(rec.SignInSubject, 256)
		}
	}
	if host := r.Host; !strings.HasPrefix(e.RequestURI, "https://"+host+"/") {
		e.Properties.RequestHost = capField(host, 256)
	}
	if err := s.audit.Append(stream, e); err != nil {
		// Ready refuses the next requests; this one already ran.
		s.log.Error("audit record lost", "err", err, "operation", e.OperationName, "status", status)
	}
}

// maxRecordedField bounds what a record copies of one field of a request
// (its URI, user agent, correlation id): a client cannot make the log, and
// the storage it is shipped to, grow by more than a few KiB a request.
const maxRecordedField = 4 << 10

// truncatedMark ends a field cut to its bound.
const truncatedMark = "…[truncated]"

// capField returns s, or its first bytes and truncatedMark within max
// bytes, cut between characters.
func capField(s string, max int) string {
	// Invalid UTF-8 would not survive the record's JSON unchanged (it is
	// written as U+FFFD), so the hash verification recomputes would differ
	// from the one written: an outsider's User-Agent could make a chain
	// look edited. Such bytes are recorded as U+FFFD to begin with.
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max - len(truncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + truncatedMark
}

// recordedQuery are the query parameters whose values a record keeps
// (compared in lower case): paging and filtering, never a value a client
// might have put a secret in.
var recordedQuery = map[string]bool{
	"api-version": true, "$skiptoken": true, "maxresults": true, "$filter": true,
	"$top": true, "$skip": true, "$expand": true, "$select": true, "$orderby": true,
}

// redactedValue replaces the values of other query parameters.
const redactedValue = "REDACTED"

// recordedURI is the request's URI as a record keeps it: the values of
// query parameters not in recordedQuery are replaced by redactedValue, so
// a client_secret sent in a query string lands neither in the journal nor
// in blob storage.
// The scheme and host are the configured ones the request reached (base),
// not its Host header, which the client chose.
func recordedURI(r *http.Request, base string) string {
	u := *r.URL
	u.RawQuery = redactQuery(u.RawQuery)
	return base + u.RequestURI()
}

// recordedBase is the configured URL a request reached, without a
// trailing slash: its HSM's URI, or the server's for other surfaces.
func (s *Server) recordedBase(info *requestInfo) string {
	if info.base != "" {
		return info.base
	}
	return strings.TrimSuffix(s.base, "/")
}

func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		switch {
		case recordedQuery[strings.ToLower(name)]:
		case hasValue:
			parts[i] = k + "=" + redactedValue
		case p != "":
			parts[i] = redactedValue // a bare word may itself be a secret
		}
	}
	return strings.Join(parts, "&")
}

// hsmResourceID is the ARM id of an HSM, upper-cased as Azure writes it in
// logs.
func (s *Server) hsmResourceID(r *http.Request, name string) string {
	if h, err := s.registry.Get(r.Context(), name); err == nil {
		return strings.ToUpper(s.hsmResourceIDOf(h))
	}
	return strings.ToUpper("/subscriptions/" + s.sub + "/resourceGroups/keyward/providers/Microsoft.KeyVault/managedHSMs/" + name)
}

// hsmResourceIDOf is the ARM id of an HSM.
func (s *Server) hsmResourceIDOf(h *domain.HSM) string {
	rg := h.ResourceGroup
	if rg == "" {
		rg = "keyward"
	}
	return "/subscriptions/" + s.sub + "/resourceGroups/" + rg + "/providers/Microsoft.KeyVault/managedHSMs/" + h.Name
}

// recordScheduled audits an action the rotation scheduler took.
func (s *Server) recordScheduled(ctx context.Context, h *domain.HSM, op, key, version string, err error) {
	status := http.StatusOK
	if err != nil {
		status = http.StatusInternalServerError
	}
	e := &audit.Event{TenantID: s.dir.TenantID(), Time: time.Now().UTC().Format(audit.TimeLayout), ResourceID: strings.ToUpper(s.hsmResourceIDOf(h)),
		OperationName: op, Category: audit.Category, ResultType: audit.ResultType(status), ResultSignature: http.StatusText(status),
		HTTPStatusCode: status, ClientInfo: "keyward rotation scheduler", CallerIPAddress: "127.0.0.1",
		RequestURI: strings.TrimSuffix(strings.TrimSuffix(s.HSMURI(h.Name), "/")+"/keys/"+key+"/"+version, "/"),
		Properties: audit.Properties{PoolType: "M-HSM", SKUFamily: "B", SKUName: "Standard_B1", Key: key, Action: "scheduled"}}
	if err := s.audit.Append(audit.StreamOf(h.Name), e); err != nil {
		s.log.Error("audit record of a scheduled action lost", "err", err, "operation", op)
	}
}

func checkpointKeyAAD() []byte { return []byte("keyward audit checkpoint key") }

// checkpointPublicKeyFile is where, in the journal's directory, the
// checkpoints' public key is published for `keyward audit verify`.
const checkpointPublicKeyFile = "checkpoint-public-key.pem"

// startAuditCheckpoints starts signing checkpoints of the audit journal
// (see audit.Checkpointer) with the node's checkpoint key, created on the
// first start and kept sealed in the store as the token key is, and
// publishes its public key. The last checkpoint is signed at Close,
// before the journal closes.
func (s *Server) startAuditCheckpoints(ctx context.Context, seal domain.Seal, j *audit.Journal) error {
	key, err := loadOrCreateCheckpointKey(ctx, s.store, seal)
	if err != nil {
		return err
	}
	pub, err := audit.MarshalPublicKey(key.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(j.Dir(), checkpointPublicKeyFile), pub, 0o644); err != nil {
		return fmt.Errorf("server: publishing the audit checkpoint key: %w", err)
	}
	c, err := audit.StartCheckpointer(audit.CheckpointerConfig{Journal: j, Key: key, Log: s.log})
	if err != nil {
		return err
	}
	s.closers = append(s.closers, c.Close)
	return nil
}

func loadOrCreateCheckpointKey(ctx context.Context, st store.Store, seal domain.Seal) (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	err := st.Update(ctx, func(tx store.Tx) error {
		n, err := tx.GetNode(ctx)
		if err != nil {
			return err
		}
		if len(n.CheckpointKey) > 0 {
			seed, err := seal.Open(ctx, n.CheckpointKey, checkpointKeyAAD())
			if err != nil {
				return fmt.Errorf("server: opening the audit checkpoint key: %w", err)
			}
			if len(seed) != ed25519.SeedSize {
				return errors.New("server: the audit checkpoint key is not an Ed25519 seed")
			}
			key = ed25519.NewKeyFromSeed(seed)
			return nil
		}
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return fmt.Errorf("server: generating the audit checkpoint key: %w", err)
		}
		sealed, err := seal.Seal(ctx, k.Seed(), checkpointKeyAAD())
		if err != nil {
			return err
		}
		key = k
		n.CheckpointKey = sealed
		return tx.UpdateNode(ctx, n)
	})
	return key, err
}
