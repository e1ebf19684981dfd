//go:build cgo && !nopkcs11

package domain

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/miekg/pkcs11"
)

// PKCS11Config names a token and the key in it that seals domain keys.
type PKCS11Config struct {
	Module     string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	TokenLabel string
	PIN        string
	KeyLabel   string // default "keyward-seal"
}

// PKCS11Seal seals with an AES-256 key that lives in a PKCS#11 token and
// never leaves it (CKA_EXTRACTABLE false, CKA_SENSITIVE true): the token
// does the AES-GCM. A session is not safe for concurrent use, so calls
// are serialised; sealing happens at start-up and on HSM life-cycle
// changes, not per request.
type PKCS11Seal struct {
	mu      sync.Mutex
	ctx     *pkcs11.Ctx
	session pkcs11.SessionHandle
	key     pkcs11.ObjectHandle
	rand    io.Reader
}

var _ Seal = (*PKCS11Seal)(nil)

// pkcs11Version prefixes blobs sealed by a token (the file seal writes 1).
const pkcs11Version = 2

// ErrPKCS11PIN is returned when the token refuses the PIN.
var ErrPKCS11PIN = errors.New("domain: the PKCS#11 token refused the PIN")

// OpenPKCS11Seal logs in to the token and finds, or on first use creates,
// the sealing key.
func OpenPKCS11Seal(cfg PKCS11Config) (*PKCS11Seal, error) {
	if cfg.KeyLabel == "" {
		cfg.KeyLabel = "keyward-seal"
	}
	p := pkcs11.New(cfg.Module)
	if p == nil {
		return nil, fmt.Errorf("domain: cannot load the PKCS#11 module %s", cfg.Module)
	}
	fail := func(err error) (*PKCS11Seal, error) {
		p.Finalize()
		p.Destroy()
		return nil, err
	}
	if err := p.Initialize(); err != nil {
		return fail(fmt.Errorf("domain: initialising %s: %w", cfg.Module, err))
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return fail(fmt.Errorf("domain: listing PKCS#11 slots: %w", err))
	}
	slot, found := uint(0), false
	for _, s := range slots {
		if ti, err := p.GetTokenInfo(s); err == nil && ti.Label == cfg.TokenLabel {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fail(fmt.Errorf("domain: no PKCS#11 token is labelled %q in %s", cfg.TokenLabel, cfg.Module))
	}
	session, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fail(fmt.Errorf("domain: opening a PKCS#11 session: %w", err))
	}
	if err := p.Login(session, pkcs11.CKU_USER, cfg.PIN); err != nil {
		var pe pkcs11.Error
		if errors.As(err, &pe) && (pe == pkcs11.CKR_PIN_INCORRECT || pe == pkcs11.CKR_PIN_INVALID || pe == pkcs11.CKR_PIN_LEN_RANGE) {
			return fail(fmt.Errorf("%w of token %q", ErrPKCS11PIN, cfg.TokenLabel))
		}
		if !(errors.As(err, &pe) && pe == pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
			return fail(fmt.Errorf("domain: logging in to token %q: %w", cfg.TokenLabel, err))
		}
	}
	s := &PKCS11Seal{ctx: p, session: session, rand: rand.Reader}
	if s.key, err = s.findOrCreateKey(cfg.KeyLabel); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *PKCS11Seal) findOrCreateKey(label string) (pkcs11.ObjectHandle, error) {
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}
	if err := s.ctx.FindObjectsInit(s.session, tmpl); err != nil {
		return 0, fmt.Errorf("domain: searching the token: %w", err)
	}
	objs, _, err := s.ctx.FindObjects(s.session, 2)
	s.ctx.FindObjectsFinal(s.session)
	if err != nil {
		return 0, fmt.Errorf("domain: searching the token: %w", err)
	}
	switch len(objs) {
	case 1:
		return objs[0], nil
	case 2:
		return 0, fmt.Errorf("domain: the token holds two keys labelled %q", label)
	}
	key, err := s.ctx.GenerateKey(s.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
	})
	if err != nil {
		return 0, fmt.Errorf("domain: creating the sealing key in the token: %w", err)
	}
	return key, nil
}

// Seal implements Seal: version || nonce || AES-GCM(plaintext, aad) done
// by the token.
func (s *PKCS11Seal) Seal(_ context.Context, plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("domain: reading nonce: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	params := pkcs11.NewGCMParams(nonce, aad, 128)
	defer params.Free()
	if err := s.ctx.EncryptInit(s.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, s.key); err != nil {
		return nil, fmt.Errorf("domain: PKCS#11 encrypt: %w", err)
	}
	ct, err := s.ctx.Encrypt(s.session, plaintext)
	if err != nil {
		return nil, fmt.Errorf("domain: PKCS#11 encrypt: %w", err)
	}
	return append(append([]byte{pkcs11Version}, nonce...), ct...), nil
}

// Open implements Seal.
func (s *PKCS11Seal) Open(_ context.Context, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+12+16 || sealed[0] != pkcs11Version {
		return nil, ErrOpen
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	params := pkcs11.NewGCMParams(sealed[1:13], aad, 128)
	defer params.Free()
	if err := s.ctx.DecryptInit(s.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, s.key); err != nil {
		return nil, fmt.Errorf("domain: PKCS#11 decrypt: %w", err)
	}
	pt, err := s.ctx.Decrypt(s.session, sealed[13:])
	if err != nil {
		return nil, ErrOpen
	}
	return pt, nil
}

// Close logs out and unloads the module.
func (s *PKCS11Seal) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx.Logout(s.session)
	s.ctx.CloseSession(s.session)
	err := s.ctx.Finalize()
	s.ctx.Destroy()
	return err
}
