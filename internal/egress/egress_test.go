package egress

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestCheckURL(t *testing.T) {
	strict, lab := Policy{}, Policy{AllowPrivate: true}
	for raw, want := range map[string][2]bool{ // strict, lab
		"https://contoso.blob.core.windows.net/c":  {true, true},
		"https://20.60.1.2/c":                      {true, true},
		"http://contoso.blob.core.windows.net/c":   {false, true},
		"https://127.0.0.1:10000/devstoreaccount1": {false, true},
		"https://[::1]/c":                          {false, true},
		"https://[::ffff:127.0.0.1]/c":             {false, true},
		"https://169.254.169.254/metadata":         {false, true},
		"https://10.0.0.1/c":                       {false, true},
		"https://192.168.1.1/c":                    {false, true},
		"https://100.64.0.1/c":                     {false, true},
		"https://0.0.0.0/c":                        {false, true},
		"https://[fe80::1]/c":                      {false, true},
		"ftp://contoso/c":                          {false, false},
		"/relative":                                {false, false},
	} {
		if got := strict.CheckURL(raw) == nil; got != want[0] {
			t.Errorf("strict %s: allowed %v", raw, got)
		}
		if got := lab.CheckURL(raw) == nil; got != want[1] {
			t.Errorf("lab %s: allowed %v", raw, got)
		}
	}
}

// TestDialerRefusesPrivateAddresses: a name that resolves to loopback is
// refused when dialled, not only a literal address when named.
func TestDialerRefusesPrivateAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if _, err := (Policy{}).Dialer().DialContext(context.Background(), "tcp", "localhost:"+port); !errors.Is(err, ErrForbidden) {
		t.Fatalf("dialling localhost: %v, want ErrForbidden", err)
	}
	c, err := Policy{AllowPrivate: true}.Dialer().DialContext(context.Background(), "tcp", "127.0.0.1:"+port)
	if err != nil {
		t.Fatalf("dialling loopback when allowed: %v", err)
	}
	c.Close()
}
