package identityapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// The device authorization grant (RFC 8628): POST /devicecode starts a
// device's sign-in; the user enters its code at /devicelogin (a page like
// the sign-in page, its state sealed and bound to a cookie likewise), then
// signs in on the sign-in page; the device polls /token.

var codePage = template.Must(template.ParseFS(signinFiles, "signin/code.html"))

type deviceCodeResponse struct {
	UserCode        string `json:"user_code"`
	DeviceCode      string `json:"device_code"`
	VerificationURI string `json:"verification_uri"`
	ExpiresIn       int    `json:"expires_in"`
	Interval        int    `json:"interval"`
	Message         string `json:"message"`
}

// deviceCode is POST /{tenant}/oauth2/v2.0/devicecode.
func (a *API) deviceCode(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "AADSTS900144: The request body must be a form.", 900144)
		return
	}
	client, err := a.dir.PublicClientByID(r.Context(), r.PostForm.Get("client_id"))
	if err == nil && !client.DeviceCode {
		err = identity.ErrUnknownClient
	}
	if err != nil {
		oauthError(w, http.StatusBadRequest, "unauthorized_client", "AADSTS700016: Application not found in the directory, or not a public client.", 700016)
		return
	}
	route.RecordOf(ctx).SignInSubject = client.ID
	if _, err := a.tokens.Audience(r.PostForm.Get("scope")); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_scope", "AADSTS500011: The resource principal was not found: "+err.Error(), 500011)
		return
	}
	// Starting one costs the store a write: bounded per address, as
	// sign-ins are, and in number (identity.maxPendingDeviceCodes).
	source := sourceOf(r)
	if until, err := a.throttle.Check("devicecode", source); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(until)/time.Second))))
		oauthError(w, http.StatusTooManyRequests, "slow_down", "Too many device sign-ins from this address: try again later.", 0)
		return
	}
	a.throttle.Fail("devicecode", source) // counted; a completed sign-in does not clear it
	code, dc, err := a.dir.StartDeviceCode(ctx, client.ID, r.PostForm.Get("scope"))
	if err != nil {
		if errors.Is(err, identity.ErrTooManyDeviceCodes) {
			w.Header().Set("Retry-After", "60")
			oauthError(w, http.StatusServiceUnavailable, "temporarily_unavailable", "Too many device sign-ins are waiting: try again in a few minutes.", 0)
			return
		}
		a.log.ErrorContext(ctx, "starting a device sign-in", "err", err)
		oauthError(w, http.StatusInternalServerError, "server_error", "the sign-in could not be started", 0)
		return
	}
	verify := a.base + "devicelogin"
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, deviceCodeResponse{UserCode: dc.UserCode, DeviceCode: code, VerificationURI: verify,
		ExpiresIn: int(identity.DeviceCodeLifetime / time.Second), Interval: identity.DeviceCodeInterval,
		Message: "To sign in, use a web browser to open the page " + verify + " and enter the code " + dc.UserCode + " to authenticate."})
}

// deviceLogin is GET /devicelogin: the page that asks for the code.
func (a *API) deviceLogin(w http.ResponseWriter, r *http.Request) {
	a.codePage(w, r, http.StatusOK, flow{CSRF: bindCookie(w)}, "")
}

func (a *API) codePage(w http.ResponseWriter, r *http.Request, status int, f flow, msg string) {
	sealed, err := a.dir.SealFlow(f)
	if err != nil {
		a.log.ErrorContext(r.Context(), "sealing a sign-in flow", "err", err)
		authorizeError(w, http.StatusInternalServerError, "The sign-in page could not be made.")
		return
	}
	a.render(w, r, status, codePage, codeData{Base: a.base, Action: a.base + "devicelogin", Flow: sealed, Error: msg})
}

// codeData fills the code page: the form, or (Done) the end of a
// device's sign-in.
type codeData struct {
	Base, Action, Flow, Error, Client string
	Done                              bool
}

// deviceLoginCode is POST /devicelogin: the code, then the sign-in page.
func (a *API) deviceLoginCode(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	f, ok := a.openForm(w, r)
	if !ok {
		return
	}
	// Guessing codes is throttled per address, as passwords are.
	source := sourceOf(r)
	if until, err := a.throttle.Check("devicelogin", source); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(until)/time.Second))))
		a.codePage(w, r, http.StatusTooManyRequests, f, "Too many wrong codes from here. Try again later.")
		return
	}
	dc, err := a.dir.PendingDeviceCode(ctx, r.PostForm.Get("code"))
	if err != nil {
		if fault.KindOf(err) == fault.NotFound {
			a.throttle.Fail("devicelogin", source)
			slowDown(ctx, a.throttle.Failures("devicelogin", source))
			a.codePage(w, r, http.StatusBadRequest, f, "That code did not work. Check the code and try again.")
			return
		}
		a.log.ErrorContext(ctx, "reading a device sign-in", "err", err)
		authorizeError(w, http.StatusServiceUnavailable, "The sign-in cannot be completed now: try again later.")
		return
	}
	client, err := a.dir.PublicClientByID(r.Context(), dc.ClientID)
	if err != nil {
		authorizeError(w, http.StatusBadRequest, "The application cannot sign in here.")
		return
	}
	f.ClientID, f.Device, f.Scope = client.ID, dc.UserCode, dc.Scope
	a.page(w, r, http.StatusOK, client.Name, f, "password", "", "")
}

// openForm reads a sign-in form and its sealed flow, which must be bound
// to this browser's cookie: a form posted from anywhere else is refused.
func (a *API) openForm(w http.ResponseWriter, r *http.Request) (flow, bool) {
	var f flow
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		authorizeError(w, http.StatusBadRequest, "The sign-in form could not be read.")
		return f, false
	}
	if err := a.dir.OpenFlow(r.PostForm.Get("flow"), &f); err != nil {
		authorizeError(w, http.StatusBadRequest, "The sign-in page expired or was altered: start the sign-in again.")
		return f, false
	}
	c, err := r.Cookie(csrfCookie)
	sum := sha256.Sum256([]byte(cookieValue(c, err)))
	if subtle.ConstantTimeCompare([]byte(b64(sum[:])), []byte(f.CSRF)) != 1 {
		authorizeError(w, http.StatusForbidden, "The sign-in form did not come from this sign-in page: start the sign-in again.")
		return f, false
	}
	return f, true
}
