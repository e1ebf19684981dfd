package releasepolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// cvmPolicy is the shape of Azure's confidential VM release policy.
const cvmPolicy = `{
  "version": "1.0.0",
  "anyOf": [
    {"authority": "https://sharedeus.eus.attest.azure.net/",
     "allOf": [
       {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
       {"claim": "x-ms-isolation-tee.x-ms-compliance-status", "equals": "azure-compliant-cvm"}]},
    {"authority": "https://sharedweu.weu.attest.azure.net/",
     "allOf": [
       {"claim": "x-ms-isolation-tee.x-ms-attestation-type", "equals": "sevsnpvm"},
       {"anyOf": [{"claim": "x-ms-sevsnpvm-guestsvn", "greaterOrEquals": 2}, {"claim": "debuggable", "equals": false}]}]}]}`

func claims(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := decode([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestEvaluate(t *testing.T) {
	p, err := Parse([]byte(cvmPolicy))
	if err != nil {
		t.Fatal(err)
	}
	good := `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm", "x-ms-compliance-status": "azure-compliant-cvm"}}`
	for _, c := range []struct {
		issuer, claims string
		want           bool
	}{
		{"https://sharedeus.eus.attest.azure.net", good, true},
		{"https://SHAREDEUS.eus.attest.azure.net/", good, true},
		{"https://other.attest.azure.net", good, false},
		{"https://sharedeus.eus.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "tdxvm", "x-ms-compliance-status": "azure-compliant-cvm"}}`, false},
		{"https://sharedeus.eus.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}}`, false},
		{"https://sharedeus.eus.attest.azure.net", `{"x-ms-isolation-tee.x-ms-attestation-type": "sevsnpvm", "x-ms-isolation-tee.x-ms-compliance-status": "azure-compliant-cvm"}`, true},
		{"https://sharedweu.weu.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}, "x-ms-sevsnpvm-guestsvn": 3}`, true},
		{"https://sharedweu.weu.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}, "x-ms-sevsnpvm-guestsvn": 2.0}`, true},
		{"https://sharedweu.weu.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}, "x-ms-sevsnpvm-guestsvn": 1}`, false},
		{"https://sharedweu.weu.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}, "x-ms-sevsnpvm-guestsvn": "9", "debuggable": false}`, true},
		{"https://sharedweu.weu.attest.azure.net", `{"x-ms-isolation-tee": {"x-ms-attestation-type": "sevsnpvm"}, "x-ms-sevsnpvm-guestsvn": "9", "debuggable": "false"}`, false},
	} {
		if got, why := p.Evaluate(c.issuer, claims(t, c.claims)); got != c.want {
			t.Errorf("%s %s = %v (%s), want %v", c.issuer, c.claims, got, why, c.want)
		}
	}
}

func TestOperators(t *testing.T) {
	for _, c := range []struct {
		cond, claims string
		want         bool
	}{
		{`{"claim":"a","notEquals":"x"}`, `{"a":"y"}`, true},
		{`{"claim":"a","notEquals":"x"}`, `{"a":"x"}`, false},
		{`{"claim":"a","notEquals":"x"}`, `{}`, false},
		{`{"claim":"a","exists":true}`, `{"a":0}`, true},
		{`{"claim":"a","exists":false}`, `{"a":0}`, false},
		{`{"claim":"a","exists":false}`, `{}`, true},
		{`{"claim":"a","less":10}`, `{"a":9.5}`, true},
		{`{"claim":"a","lessOrEquals":10}`, `{"a":1e1}`, true},
		{`{"claim":"a","greater":10}`, `{"a":10}`, false},
		{`{"claim":"a","greater":10}`, `{"a":"11"}`, false},
		{`{"claim":"a","equals":1}`, `{"a":1e999999999}`, false},
		{`{"claim":"a","condition":"equals","value":"x"}`, `{"a":"x"}`, true},
	} {
		p, err := Parse([]byte(`{"version":"1.0","anyOf":[{"authority":"https://a.example","allOf":[` + c.cond + `]}]}`))
		if err != nil {
			t.Fatalf("%s: %v", c.cond, err)
		}
		if got, _ := p.Evaluate("https://a.example", claims(t, c.claims)); got != c.want {
			t.Errorf("%s with %s = %v, want %v", c.cond, c.claims, got, c.want)
		}
	}
}

// TestMarshal writes a policy back in version 1.0.0's form, camelCase and
// in Azure's order, whatever form it was read in.
func TestMarshal(t *testing.T) {
	p, err := Parse([]byte(`{"anyof":[{"allof":[{"value":"sevsnpvm","condition":"equals","claim":"t"},{"anyOf":[{"claim":"n","greater":2}]}],"authority":"https://a.example/"}],"version":"1.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":"1.0.0","anyOf":[{"authority":"https://a.example/","allOf":[{"claim":"t","equals":"sevsnpvm"},{"anyOf":[{"claim":"n","greater":2}]}]}]}`
	if got := string(p.Marshal()); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	again, err := Parse(p.Marshal())
	if err != nil || !bytes.Equal(again.Marshal(), p.Marshal()) {
		t.Fatalf("a written policy does not read back the same: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	deep := `{"claim":"a","equals":1}`
	for range 10 {
		deep = `{"allOf":[` + deep + `]}`
	}
	many := strings.Repeat(`{"claim":"a","equals":1},`, maxConditions) + `{"claim":"a","equals":1}`
	for name, policy := range map[string]string{
		"not JSON":          `{`,
		"no version":        `{"anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","equals":1}]}]}`,
		"version 2":         `{"version":"2.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","equals":1}]}]}`,
		"no authorities":    `{"version":"1.0.0","anyOf":[]}`,
		"http authority":    `{"version":"1.0.0","anyOf":[{"authority":"http://a.example","allOf":[{"claim":"a","equals":1}]}]}`,
		"no conditions":     `{"version":"1.0.0","anyOf":[{"authority":"https://a.example"}]}`,
		"both groups":       `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","equals":1}],"anyOf":[{"claim":"a","equals":1}]}]}`,
		"empty group":       `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[]}]}`,
		"unknown operator":  `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","matches":"x"}]}]}`,
		"two operators":     `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","equals":1,"less":2}]}]}`,
		"object value":      `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","equals":{}}]}]}`,
		"less than string":  `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","less":"2"}]}]}`,
		"exists with 1":     `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","exists":1}]}]}`,
		"no claim":          `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"equals":1}]}]}`,
		"too deep":          `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[` + deep + `]}]}`,
		"too many":          `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[` + many + `]}]}`,
		"too long":          `{"version":"1.0.0","x":"` + strings.Repeat("a", MaxSize) + `"}`,
		"group with claim":  `{"version":"1.0.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","allOf":[{"claim":"a","equals":1}]}]}]}`,
		"authority no host": `{"version":"1.0.0","anyOf":[{"authority":"https:///x","allOf":[{"claim":"a","equals":1}]}]}`,
	} {
		if _, err := Parse([]byte(policy)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(cvmPolicy))
	f.Add([]byte(`{"version":"1.0","anyOf":[{"authority":"https://a.example","allOf":[{"claim":"a","condition":"equals","value":"x"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data)
		if err != nil {
			return
		}
		again, err := Parse(p.Marshal())
		if err != nil || !bytes.Equal(again.Marshal(), p.Marshal()) {
			t.Fatalf("%s does not read back: %v", p.Marshal(), err)
		}
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		p.Evaluate(p.Authorities[0].URL, m)
	})
}

// TestCaseCollidingFieldsAreRefused replays an attack: a policy with
// anyOf and anyof (or claim and Claim) was stored as either of its two
// readings, by the chance of map order, so the policy a reviewer approved
// need not be the one kept. Such a policy is refused at every level.
func TestCaseCollidingFieldsAreRefused(t *testing.T) {
	strict := `{"authority":"https://strict.example","allOf":[{"claim":"a","equals":"1"}]}`
	loose := `{"authority":"https://evil.example","allOf":[{"claim":"a","equals":"1"}]}`
	for name, policy := range map[string]string{
		"top":       `{"version":"1.0.0","anyOf":[` + strict + `],"anyof":[` + loose + `]}`,
		"authority": `{"version":"1.0.0","anyOf":[{"authority":"https://strict.example","Authority":"https://evil.example","allOf":[{"claim":"a","equals":"1"}]}]}`,
		"condition": `{"version":"1.0.0","anyOf":[{"authority":"https://strict.example","allOf":[{"claim":"a","Claim":"b","equals":"1"}]}]}`,
	} {
		for range 20 {
			if _, err := Parse([]byte(policy)); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "two spellings") {
				t.Fatalf("%s: %v", name, err)
			}
		}
	}
}
