package domain

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/securitydomain"
	"github.com/keyward/keyward/internal/store"
)

// domainTag labels the security-domain datum that carries the domain key.
const domainTag = "hsm_backup"

// domainPayload is the plaintext of that datum.
type domainPayload struct {
	Format    int    `json:"format"`
	DomainID  string `json:"domainId"`
	DomainKey []byte `json:"domainKey"`
}

// Errors of the security-domain life cycle.
var (
	ErrWrongState = fault.New(fault.Conflict, "Conflict", "the HSM is not in a state that allows this operation")
)

// DownloadSecurityDomain returns the HSM's security domain encrypted to
// the custodians' certificates, any required of whom can recover it, and
// activates a provisioned HSM. An active HSM may download again (new
// custodians, the same domain) once another administrator approved the
// request (see ApproveDownload), unless its setting turns that off;
// until then it returns ErrApprovalRequired.
func (r *Registry) DownloadSecurityDomain(ctx context.Context, name, requester string, certs []*x509.Certificate, required int) (*securitydomain.File, error) {
	h, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if h.State == StateRecovery {
		return nil, ErrWrongState.With("the HSM is waiting for a security domain upload (recovery); it cannot download one")
	}
	payload, err := json.Marshal(domainPayload{Format: 1, DomainID: h.DomainID, DomainKey: h.Key.raw})
	if err != nil {
		return nil, err
	}
	defer clear(payload)
	f, err := securitydomain.Seal(r.rand, map[string][]byte{domainTag: payload}, certs, required)
	if err != nil {
		return nil, err
	}
	approved, err := r.downloadApproved(ctx, h, requester, certs, required)
	if err != nil {
		return nil, err
	}
	if h.State == StateProvisioned {
		// Only one activating download: a second one racing it (with other
		// custodians) finds the HSM active and needs approval instead.
		err := r.update(ctx, name, func(rec *store.HSM) error {
			if rec.State != StateProvisioned {
				return ErrWrongState.With("the HSM was activated meanwhile by another download: download again, with a second administrator's approval")
			}
			rec.State = StateActive
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	// Every download is alerted: the activating one, an approved one, and
	// one made while the two-person rule is off.
	if r.alert != nil {
		if approved == nil {
			approved = &DownloadRequest{HSM: h.Name, Requester: requester, Certificates: certificateSet(certs),
				Required: required, Created: r.now(), Completed: r.now()}
		}
		r.alert(ctx, SecurityDomainEvent{Kind: "downloaded", HSM: h, Request: approved})
	}
	return f, nil
}

// exchangeAAD binds a sealed exchange key to its HSM.
func exchangeAAD(hsmID string) []byte { return []byte("keyward exchange key\x00" + hsmID) }

// TransferKey returns the certificate of the HSM's exchange key, creating
// the key on first request and putting a provisioned HSM into recovery.
func (r *Registry) TransferKey(ctx context.Context, name string) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := r.update(ctx, name, func(rec *store.HSM) error {
		switch rec.State {
		case StateActive:
			return ErrWrongState.With("the HSM is already activated: a security domain can be uploaded only to a new HSM")
		case StateRecovery:
			c, err := x509.ParseCertificate(rec.ExchangeCert)
			cert = c
			return err
		}
		key, err := rsa.GenerateKey(r.rand, 2048)
		if err != nil {
			return fmt.Errorf("domain: generating exchange key: %w", err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "keyward exchange key " + rec.Name},
			NotBefore: r.now().Add(-time.Hour), NotAfter: r.now().AddDate(0, 0, 30), KeyUsage: x509.KeyUsageKeyEncipherment}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return fmt.Errorf("domain: exchange certificate: %w", err)
		}
		sealed, err := r.seal.Seal(ctx, x509.MarshalPKCS1PrivateKey(key), exchangeAAD(rec.ID))
		if err != nil {
			return err
		}
		rec.State, rec.ExchangeKey, rec.ExchangeCert, rec.DomainKey = StateRecovery, sealed, der, nil
		cert, err = x509.ParseCertificate(der)
		return err
	})
	return cert, err
}

// UploadSecurityDomain installs the security domain carried by a restore
// blob into an HSM in recovery and activates it. Any failure leaves the
// HSM in recovery, unchanged.
func (r *Registry) UploadSecurityDomain(ctx context.Context, name string, blob *securitydomain.RestoreBlob) error {
	return r.update(ctx, name, func(rec *store.HSM) error {
		if rec.State != StateRecovery {
			return ErrWrongState.With("the HSM is not waiting for a security domain: get its transfer key (init-recovery) first")
		}
		der, err := r.seal.Open(ctx, rec.ExchangeKey, exchangeAAD(rec.ID))
		if err != nil {
			return fmt.Errorf("domain: opening the exchange key: %w", err)
		}
		exKey, err := x509.ParsePKCS1PrivateKey(der)
		clear(der)
		if err != nil {
			return fmt.Errorf("domain: exchange key: %w", err)
		}
		exCert, err := x509.ParseCertificate(rec.ExchangeCert)
		if err != nil {
			return fmt.Errorf("domain: exchange certificate: %w", err)
		}
		items, err := securitydomain.OpenRestoreBlob(blob, exKey, exCert)
		if err != nil {
			return err
		}
		var p domainPayload
		if err := json.Unmarshal(items[domainTag], &p); err != nil || p.Format != 1 || p.DomainID == "" {
			return securitydomain.ErrCorrupt.With("the security domain does not carry a Keyward domain key")
		}
		defer clear(p.DomainKey)
		key, err := newKey(p.DomainKey)
		if err != nil {
			return securitydomain.ErrCorrupt.With("the security domain's key is malformed")
		}
		sealed, err := SealKey(ctx, r.seal, key, p.DomainID)
		if err != nil {
			return err
		}
		rec.State, rec.DomainID, rec.DomainKey, rec.ExchangeKey, rec.ExchangeCert = StateActive, p.DomainID, sealed, nil, nil
		return nil
	})
}

// update changes an HSM's stored record in one transaction; the opened
// copy goes once it commits (apply).
func (r *Registry) update(ctx context.Context, name string, change func(*store.HSM) error) error {
	return r.store.Update(ctx, func(tx store.Tx) error {
		rec, err := tx.GetHSM(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return HSMNotFound(name)
		}
		if err != nil {
			return err
		}
		if err := change(rec); err != nil {
			return err
		}
		return tx.UpdateHSM(ctx, rec)
	})
}
