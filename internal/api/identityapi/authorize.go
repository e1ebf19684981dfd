package identityapi

import (
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"errors"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/keyward/keyward/internal/api/route"
	"github.com/keyward/keyward/internal/fault"
	"github.com/keyward/keyward/internal/identity"
)

// The browser sign-in of the authorization-code flow with PKCE: /authorize
// shows a sign-in page (user name and password, then the TOTP code when
// the user has an authenticator) and sends the browser back to the
// client's redirect URI with a code, which the client redeems at /token.
//
// The page's state travels in a sealed form field (identity.SealFlow), so
// any node continues it; a cookie, SameSite=Strict and bound to that
// state, makes a form posted from anywhere else fail (login CSRF). The
// pages carry no script, and a strict Content-Security-Policy.

//go:embed signin
var signinFiles embed.FS

var (
	signinPage   = template.Must(template.ParseFS(signinFiles, "signin/page.html"))
	responsePage = template.Must(template.ParseFS(signinFiles, "signin/response.html"))
)

// flow is the sign-in's state between its pages.
type flow struct {
	ClientID    string   `json:"c"`
	RedirectURI string   `json:"r"`
	State       string   `json:"s"`
	Challenge   string   `json:"x"`
	Scope       string   `json:"sc"`
	FormPost    bool     `json:"fp,omitempty"` // response_mode=form_post, as MSAL asks
	Device      string   `json:"d,omitempty"`  // the user code of a device's sign-in
	PasswordAt  int64    `json:"t,omitempty"`  // when the password step passed (Unix seconds)
	CSRF        string   `json:"k"`            // SHA-256 of the cookie's value
	Principal   string   `json:"p,omitempty"`
	User        string   `json:"u,omitempty"`
	AMR         []string `json:"a,omitempty"`
}

const csrfCookie = "kw_signin"

// bindCookie sets a new sign-in cookie and returns what a flow keeps of
// it: its SHA-256, which openForm compares.
func bindCookie(w http.ResponseWriter) string {
	secret := make([]byte, 32)
	rand.Read(secret)
	cookie := b64(secret)
	sum := sha256.Sum256([]byte(cookie))
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: cookie, Path: "/", MaxAge: int(flowCookieLife / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	return b64(sum[:])
}

// flowCookieLife is the sign-in cookie's: a flow's.
const flowCookieLife = 10 * time.Minute

// dropCookie ends the sign-in cookie once the flow is done.
func dropCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: csrfCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// render writes a sign-in page with the pages' headers; its forms may go
// to the origins of formTo too (a client's https redirect URI).
func (a *API) render(w http.ResponseWriter, r *http.Request, status int, t *template.Template, data any, formTo ...string) {
	pageHeaders(w, formTo...)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := t.Execute(w, data); err != nil {
		a.log.ErrorContext(r.Context(), "rendering a sign-in page", "page", t.Name(), "err", err)
	}
}

// pageHeaders are the headers of every sign-in page: nothing framed,
// cached or run; the form may go only here, and the code only to a
// loopback redirect or to the https origin of the client's registered
// redirect URI (formTo).
func pageHeaders(w http.ResponseWriter, formTo ...string) {
	h := w.Header()
	actions := "'self' http://localhost:* http://127.0.0.1:* http://[::1]:*"
	for _, to := range formTo {
		if u, err := url.Parse(to); err == nil && u.Scheme == "https" && u.Host != "" && !strings.ContainsAny(u.Host, " ;,'") {
			actions += " https://" + u.Host
		}
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; "+
		"form-action "+actions+"; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

type pageData struct {
	Base, Action, Client, Flow, Step, User, Error string
}

func (a *API) signinCSS(w http.ResponseWriter, r *http.Request) {
	static(w, "signin/signin.css", "text/css; charset=utf-8")
}

// signinJS is the one script: it sends a form_post response on, so the
// page needs no inline script (and without script, a button does).
func (a *API) signinJS(w http.ResponseWriter, r *http.Request) {
	static(w, "signin/signin.js", "text/javascript; charset=utf-8")
}

func static(w http.ResponseWriter, name, contentType string) {
	b, _ := signinFiles.ReadFile(name)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(b)
}

// authorizeError answers a request whose redirect URI cannot be trusted:
// on the page, never by sending the browser to it.
func authorizeError(w http.ResponseWriter, status int, msg string) {
	pageHeaders(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}

// authorize is GET /{tenant}/oauth2/v2.0/authorize: the sign-in page.
func (a *API) authorize(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	q := r.URL.Query()
	client, err := a.dir.PublicClientFor(r.Context(), q.Get("client_id"), q.Get("redirect_uri"))
	if err != nil {
		fe, _ := fault.As(err)
		authorizeError(w, http.StatusBadRequest, fe.Msg)
		return
	}
	route.RecordOf(r.Context()).SignInSubject = client.ID
	redirectError := func(code, desc string) {
		u, _ := url.Parse(q.Get("redirect_uri"))
		v := u.Query()
		v.Set("error", code)
		v.Set("error_description", desc)
		if s := q.Get("state"); s != "" {
			v.Set("state", s)
		}
		u.RawQuery = v.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	}
	switch {
	case q.Get("response_type") != "code":
		redirectError("unsupported_response_type", "AADSTS700054: response_type must be code.")
		return
	case q.Get("code_challenge") == "" || q.Get("code_challenge_method") != "S256":
		redirectError("invalid_request", "AADSTS9002325: Proof Key for Code Exchange (S256) is required for public clients.")
		return
	case q.Get("response_mode") != "" && q.Get("response_mode") != "query" && q.Get("response_mode") != "form_post":
		redirectError("invalid_request", "AADSTS900144: response_mode must be query or form_post.")
		return
	}
	if _, err := a.tokens.Audience(q.Get("scope")); err != nil {
		redirectError("invalid_scope", "AADSTS500011: The resource principal was not found: "+err.Error())
		return
	}
	f := flow{ClientID: client.ID, RedirectURI: q.Get("redirect_uri"), State: q.Get("state"), Challenge: q.Get("code_challenge"),
		Scope: q.Get("scope"), CSRF: bindCookie(w), FormPost: q.Get("response_mode") == "form_post"}
	a.page(w, r, http.StatusOK, client.Name, f, "password", q.Get("login_hint"), "")
}

// page renders the sign-in page for f's next step.
func (a *API) page(w http.ResponseWriter, r *http.Request, status int, clientName string, f flow, step, user, msg string) {
	sealed, err := a.dir.SealFlow(f)
	if err != nil {
		a.log.ErrorContext(r.Context(), "sealing a sign-in flow", "err", err)
		authorizeError(w, http.StatusInternalServerError, "The sign-in page could not be made.")
		return
	}
	tenant := r.PathValue("tenant")
	if tenant == "" { // a device's sign-in, from /devicelogin
		tenant = a.dir.TenantID()
	}
	a.render(w, r, status, signinPage, pageData{Base: a.base, Action: a.base + tenant + "/oauth2/v2.0/authorize", Client: clientName,
		Flow: sealed, Step: step, User: user, Error: msg}, f.RedirectURI)
}

// signIn is POST /{tenant}/oauth2/v2.0/authorize: the sign-in page's form.
func (a *API) signIn(w http.ResponseWriter, r *http.Request) {
	if !a.tenantOK(w, r) {
		return
	}
	ctx := r.Context()
	f, ok := a.openForm(w, r)
	if !ok {
		return
	}
	var client identity.PublicClient
	var err error
	if f.Device != "" {
		client, err = a.dir.PublicClientByID(r.Context(), f.ClientID)
	} else {
		client, err = a.dir.PublicClientFor(r.Context(), f.ClientID, f.RedirectURI)
	}
	if err != nil {
		authorizeError(w, http.StatusBadRequest, "The application cannot sign in here.")
		return
	}
	subject := f.User
	step := "otp"
	if f.Principal == "" {
		subject, step = r.PostForm.Get("username"), "password"
	}
	route.RecordOf(ctx).SignInSubject = subject
	source := sourceOf(r)
	// Failures answer 4xx (the browser shows the page all the same), so
	// that the audit record says the sign-in failed and names the account.
	if until, err := a.throttle.Check(subject, source); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(time.Until(until)/time.Second))))
		a.page(w, r, http.StatusTooManyRequests, client.Name, f, step, subject,
			"Your account is locked for a while after too many failed sign-ins. Try again later.")
		return
	}
	if f.Principal == "" { // the password step
		p, err := a.dir.AuthenticateUser(ctx, subject, r.PostForm.Get("password"))
		if errors.Is(err, identity.ErrBusy) {
			w.Header().Set("Retry-After", "1")
			a.page(w, r, http.StatusServiceUnavailable, client.Name, f, step, subject, "The service is busy. Try again in a moment.")
			return
		}
		if err != nil {
			a.signInFailed(w, r, subject, source, err)
			a.page(w, r, http.StatusBadRequest, client.Name, f, step, subject, "Your account or password is incorrect.")
			return
		}
		// A confirmed authenticator makes the code the second step; an
		// enrollment not yet confirmed is no second factor.
		if auth, err := a.dir.Authenticator(ctx, p.ID); err == nil && auth.Confirmed {
			f.Principal, f.User, f.AMR, f.PasswordAt = p.ID, subject, []string{"pwd"}, time.Now().Unix()
			a.page(w, r, http.StatusOK, client.Name, f, "otp", subject, "")
			return
		} else if err != nil && !errors.Is(err, identity.ErrNotFound) {
			a.signInFailed(w, r, subject, source, err)
			authorizeError(w, http.StatusServiceUnavailable, "The sign-in cannot be completed now: try again later.")
			return
		}
		a.throttle.Succeed(subject, source)
		a.finish(w, r, f, p.ID, []string{"pwd"}, time.Now())
		return
	}
	// The code step: the password was right on the page before, at most
	// a flow's lifetime ago (the page is sealed again after a wrong code,
	// but the password does not last for ever).
	passwordAt := time.Unix(f.PasswordAt, 0)
	if time.Since(passwordAt) > 10*time.Minute {
		authorizeError(w, http.StatusBadRequest, "The sign-in page expired: start the sign-in again.")
		return
	}
	if err := a.checkOTP(ctx, f.Principal, r.PostForm.Get("otp")); err != nil {
		msg, status := "That code is not right. Enter the current code from your app.", http.StatusBadRequest
		if errors.Is(err, identity.ErrLockedOut) {
			msg, status = "Too many wrong codes. Try again later.", http.StatusTooManyRequests
		} else {
			a.signInFailed(w, r, subject, source, err) // the address's count, and the delay
		}
		a.page(w, r, status, client.Name, f, "otp", f.User, msg)
		return
	}
	a.throttle.Succeed(subject, source)
	a.finish(w, r, f, f.Principal, []string{"pwd", "otp", "mfa"}, passwordAt)
}

// signInFailed counts a wrong password towards the lockout, as the token
// endpoint does.
func (a *API) signInFailed(w http.ResponseWriter, r *http.Request, subject, source string, err error) {
	if fault.KindOf(err) == fault.Unauthenticated {
		if a.throttle.Fail(subject, source) {
			a.log.WarnContext(r.Context(), "sign-in locked out after repeated failures", "subject", subject, "source", source)
		}
		slowDown(r.Context(), a.throttle.Failures(subject, source))
		return
	}
	a.log.ErrorContext(r.Context(), "browser sign-in failed", "err", err)
}

// finish gives the client its code: the browser goes to the redirect URI.
// A device's sign-in is approved instead: the device's next poll gets the
// tokens.
func (a *API) finish(w http.ResponseWriter, r *http.Request, f flow, principal string, amr []string, authTime time.Time) {
	if f.Device != "" {
		if err := a.dir.ApproveDeviceCode(r.Context(), f.Device, principal, amr); err != nil {
			if fault.KindOf(err) == fault.NotFound {
				authorizeError(w, http.StatusBadRequest, "The device's sign-in expired: start it again on the device.")
				return
			}
			a.log.ErrorContext(r.Context(), "approving a device sign-in", "err", err)
			authorizeError(w, http.StatusInternalServerError, "The sign-in could not be completed.")
			return
		}
		client, _ := a.dir.PublicClientByID(r.Context(), f.ClientID)
		dropCookie(w)
		a.render(w, r, http.StatusOK, codePage, codeData{Base: a.base, Client: client.Name, Done: true})
		return
	}
	code, err := a.dir.IssueAuthCode(r.Context(), identity.AuthCode{ClientID: f.ClientID, RedirectURI: f.RedirectURI,
		Challenge: f.Challenge, Scope: f.Scope, PrincipalID: principal, AMR: amr, AuthTime: authTime.UTC().Truncate(time.Second)})
	if errors.Is(err, identity.ErrTooManyAuthCodes) {
		w.Header().Set("Retry-After", "300")
		authorizeError(w, http.StatusTooManyRequests, "Too many sign-ins of this user are waiting to be completed: try again in a few minutes.")
		return
	}
	if err != nil {
		a.log.ErrorContext(r.Context(), "issuing an authorization code", "err", err)
		authorizeError(w, http.StatusInternalServerError, "The sign-in could not be completed.")
		return
	}
	dropCookie(w)
	pageHeaders(w, f.RedirectURI)
	if f.FormPost {
		// The code goes in a form the page posts to the redirect URI,
		// out of the URL and so out of histories and logs.
		a.render(w, r, http.StatusOK, responsePage, struct{ Base, Action, Code, State string }{a.base, f.RedirectURI, code, f.State}, f.RedirectURI)
		return
	}
	u, _ := url.Parse(f.RedirectURI)
	v := u.Query()
	v.Set("code", code)
	if f.State != "" {
		v.Set("state", f.State)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func cookieValue(c *http.Cookie, err error) string {
	if err != nil {
		return ""
	}
	return c.Value
}
