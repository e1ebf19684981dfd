package arm

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/keyward/keyward/internal/api/httpx"
	"github.com/keyward/keyward/internal/fault"
)

const (
	fuzzTenant = "0f8e2a4c-1b3d-4e5f-8a9b-0c1d2e3f4a5b"
	fuzzSub    = "6d2c1b0a-9e8f-4a7b-8c6d-5e4f3a2b1c0d"
)

// armDecoders are the request bodies the ARM surface reads, each decoded
// and validated as its handler does before touching any state.
var armDecoders = []struct {
	name   string
	decode func(body []byte) error
}{
	{"managedHSMs PUT", func(b []byte) error {
		var req createRequest
		if err := readBody(b, &req); err != nil {
			return err
		}
		_, err := req.validate(fuzzTenant)
		return err
	}},
	{"managedHSMs PATCH", func(b []byte) error { var req patchRequest; return readBody(b, &req) }},
	{"storageAccounts PUT", func(b []byte) error {
		var req accountRequest
		if err := readBody(b, &req); err != nil {
			return err
		}
		return req.validate()
	}},
	{"roleAssignments PUT", func(b []byte) error {
		var req assignmentRequest
		if err := readBody(b, &req); err != nil {
			return err
		}
		return req.validate()
	}},
	{"diagnosticSettings PUT", func(b []byte) error {
		var req settingRequest
		if err := readBody(b, &req); err != nil {
			return err
		}
		_, _, err := req.validate(fuzzSub)
		return err
	}},
}

// readBody is httpx.ReadJSON on a request that carries body, as a handler
// receives it.
func readBody(body []byte, v any) error {
	r := httptest.NewRequest("PUT", "/", bytes.NewReader(body))
	return httpx.ReadJSON(httptest.NewRecorder(), r, v)
}

var armSeeds = [][]byte{
	[]byte(`{"location":"local","sku":{"family":"B","name":"Standard_B1"},"properties":{"tenantId":"` + fuzzTenant + `",` +
		`"initialAdminObjectIds":["3c2b1a09-8f7e-4d6c-9b5a-4a3b2c1d0e9f"],"softDeleteRetentionInDays":7,"enablePurgeProtection":false}}`),
	[]byte(`{"location":"local","properties":{"createMode":"recover","initialAdminObjectIds":["3c2b1a09-8f7e-4d6c-9b5a-4a3b2c1d0e9f"]}}`),
	[]byte(`{"tags":{"env":"test"}}`),
	[]byte(`{"properties":{"primaryEndpoints":{"blob":"https://contosologs.blob.example/"},"keywardCredential":{"accountKey":"a2V5"}}}`),
	[]byte(`{"properties":{"primaryEndpoints":{"blob":"http://127.0.0.1:10000/devstoreaccount1"},"keywardCredential":{"sasToken":"sv=2024&sig=x"}}}`),
	[]byte(`{"properties":{"roleDefinitionId":"/subscriptions/` + fuzzSub + `/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7",` +
		`"principalId":"3c2b1a09-8f7e-4d6c-9b5a-4a3b2c1d0e9f","principalType":"Group"}}`),
	[]byte(`{"properties":{"storageAccountId":"/subscriptions/` + fuzzSub + `/resourceGroups/app-rg/providers/Microsoft.Storage/storageAccounts/contosologs",` +
		`"logs":[{"category":"AuditEvent","enabled":true},{"categoryGroup":"allLogs","enabled":false}]}}`),
	[]byte(`{"properties":{"storageAccountId":"/SUBSCRIPTIONS/` + fuzzSub + `/RESOURCEGROUPS/x/PROVIDERS/microsoft.storage/STORAGEACCOUNTS/y//","logs":[{"category":"Nope"}]}}`),
	[]byte(`{"properties":{"softDeleteRetentionInDays":1e400,"initialAdminObjectIds":[null]}}`),
	[]byte(`[]`), []byte(`null`), []byte(` `), []byte(`{"properties":"x"}`),
}

// FuzzARMBodies: no body makes a decoder panic, and every refusal is a
// client error (400 or 413), never an internal one.
func FuzzARMBodies(f *testing.F) {
	for i := range armDecoders {
		for _, s := range armSeeds {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		d := armDecoders[int(which)%len(armDecoders)]
		if err := d.decode(body); err != nil {
			if k := fault.KindOf(err); k != fault.Invalid && k != fault.TooLarge {
				t.Fatalf("%s: %q gave a %s error: %v", d.name, body, k, err)
			}
		}
	})
}
