// Package egress guards the requests Keyward makes to URLs that its
// callers name: storage containers for backups and logs, and federated
// identity issuers. Without a guard, whoever may name such a URL could
// make the server reach the loopback interface, the host's private
// network or a cloud metadata endpoint (server-side request forgery), and
// send storage credentials there in the clear.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/keyward/keyward/internal/fault"
)

// Policy says where outbound requests for callers' URLs may go.
type Policy struct {
	// AllowPrivate lets them use http and reach loopback, private and
	// link-local addresses: for tests, a local storage emulator (Azurite)
	// or a lab. Off, only https to public addresses is allowed.
	AllowPrivate bool
}

// ErrForbidden is returned for a URL or an address the policy refuses.
var ErrForbidden = errors.New("egress: the address is not allowed")

// CheckURL refuses a URL the policy does not allow: not https (unless
// private endpoints are allowed, when http is too), or naming a literal
// address that is not public.
func (p Policy) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fault.Invalidf("%q is not an absolute URL", raw)
	}
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && p.AllowPrivate:
	default:
		return fault.Invalidf("%s: only https URLs are allowed", u.Redacted())
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil && !p.allowed(ip) {
		return fault.Invalidf("%s names a loopback, private or link-local address: not allowed (the server's --allow-private-endpoints allows it)", u.Redacted())
	}
	return nil
}

// allowed tells whether a connection to ip is allowed.
func (p Policy) allowed(ip netip.Addr) bool {
	if p.AllowPrivate {
		return true
	}
	ip = ip.Unmap()
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() &&
		!cgnat.Contains(ip) && !ip.IsUnspecified()
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598),
// which IsPrivate does not cover.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Dialer returns a dialer that refuses, at connect time, addresses the
// policy does not allow: a host name that resolves (or re-resolves) to a
// private address is refused too.
func (p Policy) Dialer() *net.Dialer {
	return &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbidden, address)
			}
			if !p.allowed(ap.Addr()) {
				return fmt.Errorf("%w: %s is loopback, private or link-local", ErrForbidden, ap.Addr())
			}
			return nil
		}}
}

// Transport returns an HTTP transport that dials through Dialer.
func (p Policy) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := p.Dialer()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// ClientOptions are Azure SDK client options that dial through the policy
// and do not retry a refused address, as they would a network error.
func (p Policy) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Transport: p.Client(0), Retry: policy.RetryOptions{
		ShouldRetry: func(resp *http.Response, err error) bool {
			if err != nil {
				return !errors.Is(err, ErrForbidden)
			}
			switch resp.StatusCode {
			case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
				http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				return true
			}
			return false
		}}}
}

// Client returns an HTTP client over Transport.
func (p Policy) Client(timeout time.Duration) *http.Client {
	return &http.Client{Transport: p.Transport(), Timeout: timeout}
}
