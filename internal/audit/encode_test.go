package audit

import (
	"bytes"
	"encoding/json"
	"testing"
)

// encode writes the hash into the JSON it hashed: its line must be byte
// for byte what encoding/json makes of the record with its hash, and its
// hash what verification recomputes — for records with every field set,
// with none, and with characters JSON escapes.
func TestEncodeIsEncodingJSON(t *testing.T) {
	full := Event{TenantID: "t", Time: "2026-12-01T00:00:00.0000000Z", ResourceID: "/SUBSCRIPTIONS/S", OperationName: "KeySign",
		OperationVersion: "7.6", Category: Category, ResultType: "Success", ResultSignature: "OK", ResultDescription: "d",
		HTTPStatusCode: 200, DurationMs: 3, CallerIPAddress: "127.0.0.1", Identity: &Identity{Claim: Claims{ObjectID: "o", AppID: "a", UPN: "u", TenantID: "t"}},
		ClientInfo: "ua \"quoted\" <tag> & \u2028 \x01", CorrelationID: "c", RequestURI: "https://h/keys/k/sign?api-version=7.6",
		Properties: Properties{PoolType: "M-HSM", Key: "k", Action: "a", Scope: "/keys/k", Challenge: true,
			Authorization: &Authorization{Decision: "Allowed", RoleAssignmentID: "r", RoleDefinitionID: "d"}},
		Node: "n", Stream: "dev", Sequence: 42, PreviousHash: "ab"}
	for name, e := range map[string]Event{"full": full, "empty": {}} {
		line, hash, err := e.encode()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		withHash := e
		withHash.Hash = hash
		want, err := json.Marshal(&withHash)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(line, append(want, '\n')) {
			t.Errorf("%s: encode wrote\n%s\nencoding/json writes\n%s", name, line, want)
		}
		if got, err := withHash.hash(); err != nil || got != hash {
			t.Errorf("%s: the hash verification recomputes is %s, encode's %s (%v)", name, got, hash, err)
		}
	}
}
