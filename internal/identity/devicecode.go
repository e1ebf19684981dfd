package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/store"
)

// The device authorization grant (RFC 8628), as Entra runs it for `az
// login --use-device-code`: a device without a browser gets a user code,
// the user types it into a sign-in page elsewhere and signs in, and the
// device, polling the token endpoint, gets the tokens.

// DeviceCodeLifetime is how long a device's sign-in may take.
const DeviceCodeLifetime = 15 * time.Minute

// DeviceCodeInterval is how often a device may poll, in seconds.
const DeviceCodeInterval = 5

// maxPendingDeviceCodes bounds the sign-ins waiting at once: anyone may
// start one, unauthenticated.
const maxPendingDeviceCodes = 1000

// DeviceCode is a device's sign-in, pending until a user approves it.
type DeviceCode struct {
	ClientID    string    `json:"clientId"`
	Scope       string    `json:"scope"`
	UserCode    string    `json:"userCode"`
	Expires     time.Time `json:"expires"`
	PrincipalID string    `json:"principalId,omitempty"` // set when approved
	AMR         []string  `json:"amr,omitempty"`
	AuthTime    time.Time `json:"authTime,omitempty"`
}

const (
	kindDeviceCode   = "deviceCode" // by the device code's HMAC
	kindUserCode     = "userCode"   // by the user code: the device code's HMAC
	deviceCodePrefix = "kwdc."
	// userCodeLetters has no vowels (no words) and no look-alikes.
	userCodeLetters = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLength  = 9 // 20^9: 5·10^11, against throttled guessing
)

// Errors of the device code grant, with Entra's codes.
var (
	ErrAuthorizationPending = fault.New(fault.Invalid, "authorization_pending",
		"AADSTS70016: OAuth 2.0 device flow error. Authorization is pending. Continue polling.")
	ErrDeviceCodeExpired = fault.New(fault.Invalid, "expired_token",
		"AADSTS70020: The provided value for the input parameter 'device_code' is not valid. This device code has expired.")
	ErrUnknownUserCode = fault.New(fault.NotFound, "invalid_request",
		"That code did not work. Check the code and try again.")
	ErrTooManyDeviceCodes = fault.New(fault.Unavailable, "temporarily_unavailable",
		"Too many device sign-ins are waiting: try again in a few minutes.")
)

// PublicClientByID returns a registered public client.
func (d *Directory) PublicClientByID(ctx context.Context, clientID string) (PublicClient, error) {
	clients := d.PublicClients()
	i := slices.IndexFunc(clients, func(c PublicClient) bool { return strings.EqualFold(c.ID, clientID) })
	if i < 0 {
		return d.registeredPublicClient(ctx, clientID)
	}
	return clients[i], nil
}

// StartDeviceCode begins a device's sign-in for the public client
// clientID and returns its device code (the device's secret) and user
// code (what the user types).
func (d *Directory) StartDeviceCode(ctx context.Context, clientID, scope string) (deviceCode string, dc DeviceCode, err error) {
	if d.pepper == nil {
		return "", dc, errors.New("identity: the directory has no secret pepper")
	}
	raw := make([]byte, 32+userCodeLength)
	if _, err := io.ReadFull(d.rand, raw); err != nil {
		return "", dc, fmt.Errorf("identity: reading randomness: %w", err)
	}
	deviceCode = deviceCodePrefix + b64url.EncodeToString(raw[:32])
	user := make([]byte, userCodeLength)
	for i, b := range raw[32:] {
		user[i] = userCodeLetters[int(b)%len(userCodeLetters)] // 256 = 12·20 + 16: a slight bias, still ~5·10^11 codes
	}
	now := d.now()
	dc = DeviceCode{ClientID: clientID, Scope: scope, UserCode: string(user), Expires: now.Add(DeviceCodeLifetime)}
	data, err := json.Marshal(dc)
	if err != nil {
		return "", dc, err
	}
	id := d.codeID(deviceCode)
	err = d.store.Update(ctx, func(tx store.Tx) error {
		pending, err := d.dropExpiredDeviceCodes(ctx, tx, now)
		if err != nil {
			return err
		}
		if pending >= maxPendingDeviceCodes {
			return ErrTooManyDeviceCodes
		}
		if err := tx.PutObject(ctx, &store.Object{Kind: kindDeviceCode, ID: id, Data: data}); err != nil {
			return err
		}
		return tx.PutObject(ctx, &store.Object{Kind: kindUserCode, ID: strings.ToLower(dc.UserCode), Data: []byte(id)})
	})
	if err != nil {
		return "", dc, mapErr(err)
	}
	return deviceCode, dc, nil
}

// dropExpiredDeviceCodes removes the sign-ins that expired and returns how
// many are left.
func (d *Directory) dropExpiredDeviceCodes(ctx context.Context, tx store.Tx, now time.Time) (int, error) {
	all, err := tx.ListObjects(ctx, kindDeviceCode, "")
	if err != nil {
		return 0, err
	}
	left := 0
	for _, o := range all {
		var dc DeviceCode
		if json.Unmarshal(o.Data, &dc) == nil && now.Before(dc.Expires) {
			left++
			continue
		}
		if err := tx.DeleteObject(ctx, kindDeviceCode, o.ID); err != nil {
			return 0, err
		}
		if dc.UserCode != "" {
			if err := tx.DeleteObject(ctx, kindUserCode, strings.ToLower(dc.UserCode)); err != nil && !errors.Is(err, store.ErrNotFound) {
				return 0, err
			}
		}
	}
	return left, nil
}

// normalizeUserCode accepts a user code as people type it: any case,
// with spaces or dashes.
func normalizeUserCode(code string) string {
	return strings.ToLower(strings.NewReplacer(" ", "", "-", "").Replace(strings.TrimSpace(code)))
}

// PendingDeviceCode returns the sign-in a user code names, if it is still
// waiting for a user.
func (d *Directory) PendingDeviceCode(ctx context.Context, userCode string) (DeviceCode, error) {
	var dc DeviceCode
	err := d.store.View(ctx, func(tx store.Tx) error {
		ref, err := tx.GetObject(ctx, kindUserCode, normalizeUserCode(userCode))
		if err != nil {
			return err
		}
		o, err := tx.GetObject(ctx, kindDeviceCode, string(ref.Data))
		if err != nil {
			return err
		}
		return json.Unmarshal(o.Data, &dc)
	})
	if errors.Is(err, store.ErrNotFound) || err == nil && (dc.PrincipalID != "" || !d.now().Before(dc.Expires)) {
		return DeviceCode{}, ErrUnknownUserCode
	}
	if err != nil {
		return DeviceCode{}, mapErr(err)
	}
	return dc, nil
}

// ApproveDeviceCode records that user principalID signed in, with methods
// amr, for the sign-in userCode names: the device's next poll gets its
// tokens. The user code is spent.
func (d *Directory) ApproveDeviceCode(ctx context.Context, userCode, principalID string, amr []string) error {
	key := normalizeUserCode(userCode)
	err := d.store.Update(ctx, func(tx store.Tx) error {
		ref, err := tx.GetObject(ctx, kindUserCode, key)
		if err != nil {
			return err
		}
		o, err := tx.GetObject(ctx, kindDeviceCode, string(ref.Data))
		if err != nil {
			return err
		}
		var dc DeviceCode
		if err := json.Unmarshal(o.Data, &dc); err != nil {
			return err
		}
		if dc.PrincipalID != "" || !d.now().Before(dc.Expires) {
			return ErrUnknownUserCode
		}
		dc.PrincipalID, dc.AMR, dc.AuthTime = principalID, amr, d.now().UTC().Truncate(time.Second)
		if o.Data, err = json.Marshal(dc); err != nil {
			return err
		}
		if err := tx.PutObject(ctx, o); err != nil {
			return err
		}
		return tx.DeleteObject(ctx, kindUserCode, key)
	})
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownUserCode
	}
	return mapErr(err)
}

// RedeemDeviceCode is the device's poll: ErrAuthorizationPending until a
// user approved the sign-in, then the user and the sign-in, once.
func (d *Directory) RedeemDeviceCode(ctx context.Context, deviceCode, clientID string) (*Principal, DeviceCode, error) {
	var dc DeviceCode
	if d.pepper == nil || !strings.HasPrefix(deviceCode, deviceCodePrefix) {
		return nil, dc, ErrInvalidGrant
	}
	id := d.codeID(deviceCode)
	err := d.store.Update(ctx, func(tx store.Tx) error {
		o, err := tx.GetObject(ctx, kindDeviceCode, id)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(o.Data, &dc); err != nil {
			return err
		}
		switch {
		case !strings.EqualFold(dc.ClientID, clientID):
			return ErrInvalidGrant
		case !d.now().Before(dc.Expires):
			return ErrDeviceCodeExpired
		case dc.PrincipalID == "":
			return ErrAuthorizationPending
		}
		return tx.DeleteObject(ctx, kindDeviceCode, id)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, dc, ErrInvalidGrant
	}
	if err != nil {
		return nil, dc, mapErr(err)
	}
	p, err := d.Get(ctx, dc.PrincipalID)
	if errors.Is(err, ErrNotFound) {
		return nil, dc, ErrInvalidGrant
	}
	return p, dc, err
}
