// Package audit records one AuditEvent per request, in Azure Monitor's
// field names, in tamper-evident chains, and delivers them to sinks.
//
// Every record carries its stream's sequence number and the hash of the
// previous record of the same stream (one stream per HSM, one for the
// tenant's own endpoints), so a deleted, reordered or edited record breaks
// the chain where it happened; Verify names the first such record.
//
// Records are written first to a JSON-lines journal in the data directory
// (the file sink), which is also the on-disk buffer of the network sinks:
// a shipper reads the journal behind the request path and delivers it, in
// order and at least once, to Azure Blob storage. When the journal cannot
// be written, or undelivered records exceed the buffer limit, Ready says
// so and the server refuses requests rather than run them unlogged.
//
// A record never holds plaintext, ciphertext, key material, secrets or
// tokens: it is built from the request's method, URL, status and the
// caller's identity only, never from bodies.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Category is the only log category of a Managed HSM.
const Category = "AuditEvent"

// TimeLayout is the timestamp form Azure writes: UTC, seven fractional digits.
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// Event is one AuditEvent record. Field names follow Azure Monitor's
// resource-log schema; Sequence, PreviousHash and Hash are Keyward's chain.
type Event struct {
	TenantID          string     `json:"TenantId"`
	Time              string     `json:"time"`
	ResourceID        string     `json:"resourceId"`
	OperationName     string     `json:"operationName"`
	OperationVersion  string     `json:"operationVersion"`
	Category          string     `json:"category"`
	ResultType        string     `json:"resultType"`
	ResultSignature   string     `json:"resultSignature"`
	ResultDescription string     `json:"resultDescription,omitempty"`
	HTTPStatusCode    int        `json:"httpStatusCode"`
	DurationMs        int64      `json:"durationMs"`
	CallerIPAddress   string     `json:"callerIpAddress"`
	Identity          *Identity  `json:"identity,omitempty"`
	ClientInfo        string     `json:"clientInfo,omitempty"`
	CorrelationID     string     `json:"correlationId,omitempty"`
	RequestURI        string     `json:"requestUri"`
	Properties        Properties `json:"properties"`

	// Node names the cluster node that served the request and wrote the
	// record: each node keeps its own chains.
	Node         string `json:"node,omitempty"`
	Stream       string `json:"stream"`
	Sequence     uint64 `json:"sequence"`
	PreviousHash string `json:"previousHash"`
	Hash         string `json:"hash"`
}

// Identity is the caller, as the claims of its token.
type Identity struct {
	Claim Claims `json:"claim"`
}

// Claims are the identifying claims of a caller.
type Claims struct {
	ObjectID string `json:"oid,omitempty"`
	AppID    string `json:"appid,omitempty"`
	UPN      string `json:"upn,omitempty"`
	TenantID string `json:"tid,omitempty"`
}

// Properties are the service-specific parts of a record.
type Properties struct {
	PoolType      string         `json:"PoolType,omitempty"`
	SKUFamily     string         `json:"sku_Family,omitempty"`
	SKUName       string         `json:"sku_Name,omitempty"`
	Key           string         `json:"id,omitempty"` // the key the request named
	Action        string         `json:"action,omitempty"`
	Scope         string         `json:"requestScope,omitempty"`
	Authorization *Authorization `json:"authorization,omitempty"`
	// SignInSubject is, on a failed sign-in, the client id or user name
	// the attempt was for (never its secret), so that guessing against one
	// account shows in the log. A Keyward property: Azure has none.
	SignInSubject string `json:"signInSubject,omitempty"`
	// RequestHost is the Host header when it differs from the configured
	// host that requestUri names (a request for an HSM that does not
	// exist, say). The client chose it: it is evidence, not an address.
	RequestHost string `json:"requestHost,omitempty"`
	// Challenge marks a request that carried no access token, answered
	// 401 with the challenge: the first leg of every Azure SDK call, which
	// then retries with a token. A Keyward property, so that an auditor
	// can tell these from refusals.
	Challenge bool `json:"challenge,omitempty"`
}

// Authorization is the decision the request met.
type Authorization struct {
	Decision         string `json:"decision"` // Allowed or Denied
	RoleAssignmentID string `json:"roleAssignmentId,omitempty"`
	RoleDefinitionID string `json:"roleDefinitionId,omitempty"`
}

// ResultType is Azure's word for an HTTP status.
func ResultType(status int) string {
	if status >= 200 && status < 300 {
		return "Success"
	}
	return "Failure"
}

// hash is the chain hash of e: SHA-256 of its JSON with Hash empty. The
// JSON of an Event is canonical (fixed field order, no maps, no floats).
func (e *Event) hash() (string, error) {
	_, h, err := e.encode()
	return h, err
}

// hashTail is how an Event's JSON with Hash empty ends: hash is its last
// field.
const hashTail = `"hash":""}`

// encode returns e's journal line (its JSON with the hash, and a newline)
// and the hash, from one encoding: the JSON with Hash empty is what the
// hash covers, and the line is that JSON with the hash written into its
// last field. (Two encodings per record were a tenth of a signature's
// server time.)
func (e *Event) encode() (line []byte, hash string, err error) {
	c := *e
	c.Hash = ""
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, "", fmt.Errorf("audit: encoding record: %w", err)
	}
	if !bytes.HasSuffix(b, []byte(hashTail)) {
		return nil, "", fmt.Errorf("audit: encoding record: it does not end with its hash field")
	}
	sum := sha256.Sum256(b)
	hash = hex.EncodeToString(sum[:])
	line = make([]byte, 0, len(b)+len(hash)+1)
	line = append(line, b[:len(b)-2]...) // up to the hash's opening quote
	line = append(line, hash...)
	line = append(line, "\"}\n"...)
	return line, hash, nil
}
