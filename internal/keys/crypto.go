package keys

import (
	"context"
	"slices"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/kcrypto"
)

// usable returns the parsed key for an operation after checking that the
// version allows it now: enabled, inside nbf..exp, op in key_ops.
func (s *Service) usable(ctx context.Context, h *domain.HSM, name, version, op string) (*entry, error) {
	e, gen := s.cache.get(h.Name, name, version)
	if e == nil {
		v, err := s.readLiveVersion(ctx, h, name, version)
		if err != nil {
			return nil, err
		}
		k, err := unseal(h, v)
		if err != nil {
			return nil, err
		}
		e = &entry{meta: *v, key: k}
		s.cache.put(gen, e, version == "")
	}
	m := &e.meta
	now := s.now()
	switch {
	case !m.Enabled:
		return nil, ErrOperationForbidden.With("Operation %s is not allowed on a disabled key.", op)
	case !m.NotBefore.IsZero() && now.Before(m.NotBefore):
		return nil, ErrOperationForbidden.With("Operation %s is not allowed before the key's activation date.", op)
	case !m.Expires.IsZero() && !now.Before(m.Expires):
		return nil, ErrOperationForbidden.With("Operation %s is not allowed on an expired key.", op)
	case op != opRelease && !slices.Contains(m.Ops, op):
		return nil, ErrOperationForbidden.With("Operation %s is not permitted by this key's key_ops %v.", op, m.Ops)
	}
	return e, nil
}

// Result is the output of a cryptographic operation with the version that
// produced it.
type Result struct {
	Version string
	kcrypto.Sealed
}

// Sign signs digest with a version of name ("" for the latest).
func (s *Service) Sign(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, digest []byte) (*Result, error) {
	e, err := s.usable(ctx, h, name, version, OpSign)
	if err != nil {
		return nil, err
	}
	sig, err := e.key.Sign(s.rand, alg, digest)
	if err != nil {
		return nil, err
	}
	return &Result{Version: e.meta.Version, Sealed: kcrypto.Sealed{Value: sig}}, nil
}

// Verify checks a signature. A bad signature is (false, nil).
func (s *Service) Verify(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, digest, sig []byte) (bool, error) {
	e, err := s.usable(ctx, h, name, version, OpVerify)
	if err != nil {
		return false, err
	}
	return e.key.Verify(alg, digest, sig)
}

// Encrypt encrypts in.Value.
func (s *Service) Encrypt(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, in kcrypto.Sealed) (*Result, error) {
	e, err := s.usable(ctx, h, name, version, OpEncrypt)
	if err != nil {
		return nil, err
	}
	out, err := e.key.Encrypt(s.rand, alg, in)
	if err != nil {
		return nil, err
	}
	return &Result{Version: e.meta.Version, Sealed: out}, nil
}

// Decrypt decrypts in.
func (s *Service) Decrypt(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, in kcrypto.Sealed) (*Result, error) {
	e, err := s.usable(ctx, h, name, version, OpDecrypt)
	if err != nil {
		return nil, err
	}
	pt, err := e.key.Decrypt(alg, in)
	if err != nil {
		return nil, err
	}
	return &Result{Version: e.meta.Version, Sealed: kcrypto.Sealed{Value: pt}}, nil
}

// WrapKey wraps a key.
func (s *Service) WrapKey(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, key []byte) (*Result, error) {
	e, err := s.usable(ctx, h, name, version, OpWrapKey)
	if err != nil {
		return nil, err
	}
	out, err := e.key.WrapKey(s.rand, alg, key)
	if err != nil {
		return nil, err
	}
	return &Result{Version: e.meta.Version, Sealed: kcrypto.Sealed{Value: out}}, nil
}

// UnwrapKey unwraps a key.
func (s *Service) UnwrapKey(ctx context.Context, h *domain.HSM, name, version string, alg kcrypto.Algorithm, wrapped []byte) (*Result, error) {
	e, err := s.usable(ctx, h, name, version, OpUnwrapKey)
	if err != nil {
		return nil, err
	}
	out, err := e.key.UnwrapKey(alg, wrapped)
	if err != nil {
		return nil, err
	}
	return &Result{Version: e.meta.Version, Sealed: kcrypto.Sealed{Value: out}}, nil
}
