// Package oidc fetches the signing keys an OpenID issuer publishes (its
// discovery document, then its jwks_uri) and remembers them for a while.
// Federated credentials' issuers and attestation authorities are read
// through it.
package oidc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// How long an issuer's keys, or the failure to fetch them, are remembered.
// Failures are remembered too, so that tokens naming an unreachable issuer
// do not make the server fetch on every request.
const (
	KeysTTL      = 5 * time.Minute
	FailureTTL   = 30 * time.Second
	fetchTimeout = 10 * time.Second
	maxDocument  = 1 << 20
	// MaxIssuers bounds the cache: past it, expired entries go, then the
	// oldest.
	MaxIssuers = 256
)

// Keys fetches and caches issuers' signing keys. Only https URLs are
// fetched, redirects included.
type Keys struct {
	client *http.Client
	now    func() time.Time
	// issuerOptional accepts a discovery document without "issuer" (the
	// Azure SDKs' attestation mock has none); one that names another
	// issuer is refused either way.
	issuerOptional bool

	// fetching has one fetch per issuer in flight, whoever asks.
	fetching singleflight.Group

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	keys    jose.JSONWebKeySet
	err     error
	fetched time.Time
}

// NewKeys returns a cache that fetches with a copy of client (nil: a
// default client) whose redirects stay on https. A discovery document must
// name its issuer, unless issuerOptional.
func NewKeys(client *http.Client, now func() time.Time, issuerOptional bool) *Keys {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" || len(via) >= 5 {
			return fmt.Errorf("refusing a redirect to %s", req.URL.Redacted())
		}
		return nil
	}
	return &Keys{client: &c, now: now, issuerOptional: issuerOptional, cache: map[string]cached{}}
}

// For returns issuer's signing keys, from its discovery document, cached
// for KeysTTL; a failure is cached for FailureTTL.
func (k *Keys) For(ctx context.Context, issuer string) (jose.JSONWebKeySet, error) {
	k.mu.Lock()
	c, ok := k.cache[issuer]
	k.mu.Unlock()
	if ok {
		age := k.now().Sub(c.fetched)
		if c.err == nil && age < KeysTTL {
			return c.keys, nil
		}
		if c.err != nil && age < FailureTTL {
			return jose.JSONWebKeySet{}, c.err
		}
	}
	// The result is cached for everyone, so a caller that gives up must not
	// cut the fetch short and leave a failure behind; callers who ask while
	// it runs wait for it rather than fetch again.
	ch := k.fetching.DoChan(issuer, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
		defer cancel()
		set, err := k.fetch(fctx, issuer)
		k.store(issuer, cached{keys: set, err: err, fetched: k.now()})
		return set, err
	})
	select {
	case r := <-ch:
		set, _ := r.Val.(jose.JSONWebKeySet)
		return set, r.Err
	case <-ctx.Done():
		return jose.JSONWebKeySet{}, ctx.Err()
	}
}

// store caches c for issuer, making room first when the cache is full.
func (k *Keys) store(issuer string, c cached) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.cache[issuer]; !ok && len(k.cache) >= MaxIssuers {
		oldest, at := "", c.fetched
		for name, e := range k.cache {
			if c.fetched.Sub(e.fetched) >= KeysTTL {
				delete(k.cache, name)
			} else if !e.fetched.After(at) {
				oldest, at = name, e.fetched
			}
		}
		if len(k.cache) >= MaxIssuers {
			delete(k.cache, oldest)
		}
	}
	k.cache[issuer] = c
}

func (k *Keys) fetch(ctx context.Context, issuer string) (jose.JSONWebKeySet, error) {
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" || u.Host == "" {
		return jose.JSONWebKeySet{}, fmt.Errorf("the issuer %q is not an https URL", issuer)
	}
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := k.getJSON(ctx, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", &disco); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	named := disco.Issuer == issuer || (disco.Issuer == "" && k.issuerOptional)
	if u, err := url.Parse(disco.JWKSURI); !named || err != nil || u.Scheme != "https" || u.Host == "" {
		return jose.JSONWebKeySet{}, fmt.Errorf("the issuer's discovery document does not match it")
	}
	var set jose.JSONWebKeySet
	if err := k.getJSON(ctx, disco.JWKSURI, &set); err != nil {
		return jose.JSONWebKeySet{}, err
	}
	return set, nil
}

func (k *Keys) getJSON(ctx context.Context, u string, v any) error {
	if !strings.HasPrefix(u, "https://") {
		return fmt.Errorf("refusing to fetch %s: not https", u)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", u, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, maxDocument)).Decode(v)
}
