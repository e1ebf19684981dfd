package identity

import (
	"context"
	"crypto/fips140"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/keyward/keyward/internal/domain"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// TOTP authenticators follow RFC 6238 as authenticator apps read them:
// HMAC-SHA1, six digits, 30-second steps, a 160-bit secret. A code is
// accepted for its own step and one step either side (clock drift), and
// only once: the authenticator remembers the last step accepted, and a
// code of that step or an earlier one is a replay (RFC 6238 §5.2).
const (
	totpPeriod = 30
	totpSkew   = 1
	totpIssuer = "Keyward"
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// Errors of the second factor.
var (
	// ErrInvalidOTP is a wrong, stale or replayed code. It counts towards
	// the lockout as a wrong password does.
	ErrInvalidOTP = fault.New(fault.Unauthenticated, "invalid_grant",
		"AADSTS500121: Authentication failed during strong authentication request: the verification code is not valid.")
	// errNoAuthenticator is ErrInvalidOTP for a code given by a user who has no confirmed
	// authenticator.
	errNoAuthenticator = ErrInvalidOTP.With(
		"AADSTS500121: Authentication failed during strong authentication request: the user has no confirmed authenticator.")
	// ErrAuthenticatorInForce refuses a new enrollment over a confirmed
	// authenticator: only an administrator's reset removes it, so a
	// password-only session cannot replace the second factor.
	ErrAuthenticatorInForce = fault.New(fault.Conflict, "Request_BadRequest",
		"an authenticator is already in force for this user: an administrator must reset it first")
)

// Enrollment is a new, unconfirmed authenticator: the secret is shown
// once.
type Enrollment struct {
	ID     string
	Secret string // base32, unpadded
	URI    string // otpauth://totp/...
}

func totpAAD(principalID, id string) []byte {
	return []byte("keyward totp secret\x00" + principalID + "\x00" + id)
}

// SetSeal sets the node seal under which TOTP secrets are stored. Call it
// before the directory is used.
func (d *Directory) SetSeal(seal domain.Seal) { d.seal = seal }

// EnrollTOTP gives user principalID a new authenticator, replacing an
// unconfirmed one. It is not a second factor until ConfirmTOTP accepts a
// code from it.
func (d *Directory) EnrollTOTP(ctx context.Context, principalID string) (*Enrollment, error) {
	if d.seal == nil {
		return nil, errors.New("identity: the directory has no seal")
	}
	var e *Enrollment
	err := d.store.Update(ctx, func(tx store.Tx) error {
		p, err := tx.GetPrincipal(ctx, principalID)
		if err != nil {
			return err
		}
		if p.Kind != store.KindUser {
			return fault.Invalidf("only users have authenticators")
		}
		old, err := tx.GetAuthenticator(ctx, principalID)
		if err == nil && old.Confirmed {
			return ErrAuthenticatorInForce
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: p.UPN, Period: totpPeriod,
			Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1, Rand: d.rand})
		if err != nil {
			return fmt.Errorf("identity: generating a TOTP secret: %w", err)
		}
		id := uuid.NewString()
		sealed, err := d.seal.Seal(ctx, []byte(key.Secret()), totpAAD(principalID, id))
		if err != nil {
			return fmt.Errorf("identity: sealing a TOTP secret: %w", err)
		}
		e = &Enrollment{ID: id, Secret: key.Secret(), URI: key.URL()}
		return tx.PutAuthenticator(ctx, &store.Authenticator{ID: id, PrincipalID: principalID, Sealed: sealed, Created: d.now()})
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return e, nil
}

// ConfirmTOTP puts user principalID's authenticator in force once code
// is a valid code from it.
func (d *Directory) ConfirmTOTP(ctx context.Context, principalID, code string) error {
	return d.checkTOTP(ctx, principalID, code, true)
}

// VerifyTOTP checks a code from user principalID's confirmed
// authenticator, once: a code already accepted is refused.
func (d *Directory) VerifyTOTP(ctx context.Context, principalID, code string) error {
	return d.checkTOTP(ctx, principalID, code, false)
}

func (d *Directory) checkTOTP(ctx context.Context, principalID, code string, confirm bool) error {
	if d.seal == nil {
		return errors.New("identity: the directory has no seal")
	}
	code = strings.TrimSpace(code)
	err := d.store.Update(ctx, func(tx store.Tx) error {
		a, err := tx.GetAuthenticator(ctx, principalID)
		if errors.Is(err, store.ErrNotFound) {
			if confirm {
				return ErrNotFound.With("the user has no authenticator: enroll one first")
			}
			return errNoAuthenticator
		}
		if err != nil {
			return err
		}
		if a.Confirmed == confirm {
			if confirm {
				return ErrAuthenticatorInForce.With("the authenticator is already confirmed")
			}
			return errNoAuthenticator
		}
		secret, err := d.seal.Open(ctx, a.Sealed, totpAAD(principalID, a.ID))
		if err != nil {
			return fmt.Errorf("identity: opening a TOTP secret: %w", err)
		}
		step, ok := matchTOTP(string(secret), code, d.now())
		if !ok || step <= a.LastStep {
			return ErrInvalidOTP
		}
		a.LastStep, a.Confirmed = step, true
		return tx.PutAuthenticator(ctx, a)
	})
	return mapErr(err)
}

// matchTOTP returns the time step whose code is code, within the skew
// around now. Every candidate is compared, in constant time.
func matchTOTP(secret, code string, now time.Time) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	var found int64
	ok := false
	for i := int64(-totpSkew); i <= totpSkew; i++ {
		step := cur + i
		var want string
		var err error
		// Authenticator apps compute HMAC-SHA-1 (RFC 6238), which NIST
		// still approves for HMAC (SP 800-131A) but Go's FIPS 140-3 module
		// does not carry: FIPS mode lifts its refusal for this one use.
		fips140.WithoutEnforcement(func() {
			want, err = totp.GenerateCodeCustom(secret, time.Unix(step*totpPeriod, 0), totpOpts)
		})
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			found, ok = step, true
		}
	}
	return found, ok
}

// Authenticator returns user principalID's authenticator, without its
// secret; ErrNotFound if none.
func (d *Directory) Authenticator(ctx context.Context, principalID string) (*store.Authenticator, error) {
	var a *store.Authenticator
	err := d.store.View(ctx, func(tx store.Tx) (err error) {
		a, err = tx.GetAuthenticator(ctx, principalID)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	a.Sealed = nil
	return a, nil
}

// ResetTOTP removes user principalID's authenticator (an administrator's
// reset) and revokes the user's refresh tokens, so that no session of the
// old second factor outlives it.
func (d *Directory) ResetTOTP(ctx context.Context, principalID string) error {
	err := d.store.Update(ctx, func(tx store.Tx) error {
		if err := tx.DeleteAuthenticator(ctx, principalID); err != nil {
			return err
		}
		_, err := tx.DeleteRefreshTokens(ctx, principalID, time.Time{})
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return ErrNotFound.With("the user has no authenticator")
	}
	return mapErr(err)
}
