package domain

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// Downloading the security domain of an active HSM again hands its domain
// key to whoever holds a quorum of the new custodians' keys; with a key
// backup, that is every private key in plaintext, offline. Azure lets any
// Managed HSM Administrator do it alone. Keyward asks for a second
// principal with the same right to approve each such download (two-person
// rule) unless the HSM's setting turns the rule off. The first download,
// which activates a new HSM, needs no approval: there is nothing to take
// yet.

// Download request states.
const (
	RequestPending  = "Pending"
	RequestApproved = "Approved"
	RequestUsed     = "Completed"
	RequestExpired  = "Expired"
)

// How long a download request waits for approval, and how long an approval
// waits for the requester to download.
const (
	RequestLife  = 24 * time.Hour
	ApprovalLife = time.Hour
)

// SettingDownloadApproval names the HSM setting of the two-person rule
// ("true", the default, or "false" for Azure's behaviour).
const SettingDownloadApproval = "KeywardSecurityDomainDownloadApproval"

// DownloadRequest is a request to download an active HSM's security
// domain. It is bound to the exact custodian certificates and quorum it
// was made with: an approval does not carry over to other certificates.
type DownloadRequest struct {
	ID  string `json:"id"`
	HSM string `json:"hsm"`
	// Operation is what the request asks for: OpDownload or
	// OpDisableApproval.
	Operation    string    `json:"operation"`
	Requester    string    `json:"requester"`
	Certificates []string  `json:"certificates"` // SHA-256 thumbprints of the custodians' certificates, sorted
	Required     int       `json:"required"`
	Created      time.Time `json:"created"`
	Approver     string    `json:"approver,omitempty"`
	Approved     time.Time `json:"approved,omitzero"`
	Completed    time.Time `json:"completed,omitzero"`
}

// Status is the request's state at now.
func (d *DownloadRequest) Status(now time.Time) string {
	switch {
	case !d.Completed.IsZero():
		return RequestUsed
	case !d.Approved.IsZero() && now.Before(d.Approved.Add(ApprovalLife)):
		return RequestApproved
	case d.Approved.IsZero() && now.Before(d.Created.Add(RequestLife)):
		return RequestPending
	}
	return RequestExpired
}

// ErrApprovalRequired is returned by DownloadSecurityDomain when the
// download waits for a second administrator; the message names the
// request.
var ErrApprovalRequired = fault.New(fault.Forbidden, "SecurityDomainDownloadApprovalRequired",
	"downloading the security domain of an active HSM needs a second administrator's approval")

// ErrRequestNotFound is returned for an unknown download request.
var ErrRequestNotFound = fault.New(fault.NotFound, "NotFound", "the security domain download request does not exist")

// SecurityDomainEvent is told of every step of the two-person rule, so
// the server can raise alerts.
type SecurityDomainEvent struct {
	Kind    string // "requested", "approved", "downloaded", "setting"
	HSM     *HSM
	Request *DownloadRequest
}

const requestKind = "securitydomain-download-request"

func requestID(hsm, id string) string { return strings.ToLower(hsm) + "/" + id }

// certificateSet is the sorted thumbprints of certs.
func certificateSet(certs []*x509.Certificate) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		sum := sha256.Sum256(c.Raw)
		out[i] = hex.EncodeToString(sum[:])
	}
	slices.Sort(out)
	return out
}

// Operations a request may ask approval for.
const (
	OpDownload        = "download"        // download the security domain again
	OpDisableApproval = "disableApproval" // turn the two-person rule off
)

// downloadApproved decides whether requester may download h's domain to
// certs now. On an active HSM under the two-person rule it consumes an
// approved request for the same certificates and quorum and returns it, or
// records (or finds) a pending one and returns ErrApprovalRequired.
func (r *Registry) downloadApproved(ctx context.Context, h *HSM, requester string, certs []*x509.Certificate, required int) (*DownloadRequest, error) {
	if h.State != StateActive {
		return nil, nil
	}
	on, err := r.DownloadApprovalRequired(ctx, h.Name)
	if err != nil || !on {
		return nil, err
	}
	return r.approved(ctx, h, &DownloadRequest{Operation: OpDownload, Requester: requester, Certificates: certificateSet(certs), Required: required},
		"then repeat this download with the same certificates and quorum")
}

// approved consumes requester's approved request for the operation want
// describes and returns it; or records (or finds) a pending one and
// returns ErrApprovalRequired, whose message tells what to do next.
func (r *Registry) approved(ctx context.Context, h *HSM, want *DownloadRequest, then string) (*DownloadRequest, error) {
	if want.Requester == "" {
		return nil, ErrApprovalRequired.With("the requester is unknown")
	}
	now := r.now()
	var event *SecurityDomainEvent
	var wait, used *DownloadRequest // wait is committed before the refusal is returned
	err := r.store.Update(ctx, func(tx store.Tx) error {
		objs, err := tx.ListObjects(ctx, requestKind, requestID(h.Name, ""))
		if err != nil {
			return err
		}
		var pending *DownloadRequest
		for _, o := range objs {
			var d DownloadRequest
			if err := json.Unmarshal(o.Data, &d); err != nil {
				return fmt.Errorf("domain: reading download request %s: %w", o.ID, err)
			}
			if d.Operation != want.Operation || d.Requester != want.Requester || d.Required != want.Required || !slices.Equal(d.Certificates, want.Certificates) {
				continue
			}
			switch d.Status(now) {
			case RequestApproved:
				d.Completed = now
				used = &d
				return putRequest(ctx, tx, &d)
			case RequestPending:
				pending = &d
			}
		}
		if pending == nil {
			pending = &DownloadRequest{ID: uuid.NewString(), HSM: h.Name, Operation: want.Operation, Requester: want.Requester,
				Certificates: want.Certificates, Required: want.Required, Created: now}
			if err := putRequest(ctx, tx, pending); err != nil {
				return err
			}
			event = &SecurityDomainEvent{Kind: "requested", HSM: h, Request: pending}
		}
		wait = pending
		return nil
	})
	if err != nil {
		return nil, err
	}
	if event != nil && r.alert != nil {
		r.alert(ctx, *event)
	}
	if wait != nil {
		return nil, ErrApprovalRequired.With("request %s waits for another Managed HSM Administrator's approval "+
			"(keyward keyvault security-domain approve --hsm-name %s --request-id %s); %s",
			wait.ID, h.Name, wait.ID, then)
	}
	return used, nil
}

func putRequest(ctx context.Context, tx store.Tx, d *DownloadRequest) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	return tx.PutObject(ctx, &store.Object{Kind: requestKind, ID: requestID(d.HSM, d.ID), Data: b})
}

// Now is the registry's clock.
func (r *Registry) Now() time.Time { return r.now() }

// DownloadRequests lists an HSM's download requests, newest first.
func (r *Registry) DownloadRequests(ctx context.Context, hsm string) ([]*DownloadRequest, error) {
	var objs []*store.Object
	if err := r.store.View(ctx, func(tx store.Tx) (err error) {
		objs, err = tx.ListObjects(ctx, requestKind, requestID(hsm, ""))
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]*DownloadRequest, 0, len(objs))
	for _, o := range objs {
		var d DownloadRequest
		if err := json.Unmarshal(o.Data, &d); err != nil {
			return nil, fmt.Errorf("domain: reading download request %s: %w", o.ID, err)
		}
		out = append(out, &d)
	}
	slices.SortFunc(out, func(a, b *DownloadRequest) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// DownloadRequest returns one of h's requests.
func (r *Registry) DownloadRequest(ctx context.Context, h *HSM, id string) (*DownloadRequest, error) {
	var d DownloadRequest
	err := r.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, requestKind, requestID(h.Name, strings.ToLower(id)))
		if errors.Is(err, store.ErrNotFound) {
			return ErrRequestNotFound.With("no security domain download request %s on %s", id, h.Name)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &d)
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// ApproveDownload approves a pending request. The approver must be
// another principal than the requester; the caller has checked that the
// approver holds the download right at the HSM's scope.
func (r *Registry) ApproveDownload(ctx context.Context, h *HSM, id, approver string) (*DownloadRequest, error) {
	var d DownloadRequest
	now := r.now()
	err := r.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, requestKind, requestID(h.Name, strings.ToLower(id)))
		if errors.Is(err, store.ErrNotFound) {
			return ErrRequestNotFound.With("no security domain download request %s on %s", id, h.Name)
		}
		if err != nil {
			return err
		}
		if err := json.Unmarshal(o.Data, &d); err != nil {
			return fmt.Errorf("domain: reading download request %s: %w", id, err)
		}
		if approver == "" || approver == d.Requester {
			return fault.Errorf(fault.Forbidden, "Forbidden", "a security domain download must be approved by another principal than the one who asked for it")
		}
		if st := d.Status(now); st != RequestPending {
			return ErrWrongState.With("the request %s is %s, not pending", id, strings.ToLower(st))
		}
		d.Approver, d.Approved = approver, now
		return putRequest(ctx, tx, &d)
	})
	if err != nil {
		return nil, err
	}
	if r.alert != nil {
		r.alert(ctx, SecurityDomainEvent{Kind: "approved", HSM: h, Request: &d})
	}
	return &d, nil
}

const settingKind = "hsm-setting"

// DownloadApprovalRequired tells whether the two-person rule holds for
// an HSM (the default).
func (r *Registry) DownloadApprovalRequired(ctx context.Context, hsm string) (bool, error) {
	v, err := r.Setting(ctx, hsm, SettingDownloadApproval)
	if err != nil {
		return true, err
	}
	return v != "false", nil
}

// Settings lists an HSM's settings with their values.
func (r *Registry) Settings(ctx context.Context, hsm string) (map[string]string, error) {
	v, err := r.Setting(ctx, hsm, SettingDownloadApproval)
	if err != nil {
		return nil, err
	}
	return map[string]string{SettingDownloadApproval: v}, nil
}

// Setting returns one HSM setting's value.
func (r *Registry) Setting(ctx context.Context, hsm, name string) (string, error) {
	if name != SettingDownloadApproval {
		return "", fault.Errorf(fault.NotFound, "SettingNotFound", "the HSM has no setting %q", name)
	}
	var v string
	err := r.store.View(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, settingKind, strings.ToLower(hsm)+"/"+strings.ToLower(name))
		if errors.Is(err, store.ErrNotFound) {
			v = "true"
			return nil
		}
		if err != nil {
			return err
		}
		v = string(o.Data)
		return nil
	})
	return v, err
}

// SetSetting changes an HSM setting; boolean settings take "true" or
// "false". Turning the two-person rule off is itself subject to it: it
// needs another administrator's approval of requester's request, as a
// download does, so that one administrator cannot switch the rule off,
// download alone and switch it on again. Every change is alerted.
func (r *Registry) SetSetting(ctx context.Context, h *HSM, name, value, requester string) error {
	was, err := r.Setting(ctx, h.Name, name)
	if err != nil {
		return err
	}
	if value != "true" && value != "false" {
		return fault.Invalidf("the setting %s takes \"true\" or \"false\"", name)
	}
	if was == "true" && value == "false" && h.State == StateActive {
		if _, err := r.approved(ctx, h, &DownloadRequest{Operation: OpDisableApproval, Requester: requester},
			"then repeat this change"); err != nil {
			return err
		}
	}
	err = r.store.Update(ctx, func(tx store.Tx) error {
		return tx.PutObject(ctx, &store.Object{Kind: settingKind, ID: strings.ToLower(h.Name) + "/" + strings.ToLower(name), Data: []byte(value)})
	})
	if err == nil && was != value && r.alert != nil {
		r.alert(ctx, SecurityDomainEvent{Kind: "setting", HSM: h, Request: &DownloadRequest{HSM: h.Name,
			Operation: name + "=" + value, Requester: requester, Created: r.now(), Completed: r.now()}})
	}
	return err
}
