package securitydomain

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Azure's security domain splits its master key with Shamir's scheme over
// the prime field GF(257): every byte of the secret is the constant term
// of its own random polynomial of degree required-1, and share x holds the
// polynomial's value at x. One share point is a 16-bit word: x in the top
// seven bits (x<<9), the value (0..256, nine bits) below. A share is the
// little-endian array of one word per secret byte.
//
// Unlike the splitter in Azure's CLI, which reuses one set of coefficients
// for every byte, each byte gets fresh random coefficients here: with
// shared coefficients a single custodian can recover the secret.

const prime = 257

// maxShares is the largest x a word can carry (seven bits, x ≥ 1).
const maxShares = 126

// split returns n shares of secret, any m of which recover it.
func split(rnd io.Reader, secret []byte, m, n int) ([][]byte, error) {
	if m < 2 || m > n || n > maxShares {
		return nil, fmt.Errorf("securitydomain: cannot split into %d shares with quorum %d", n, m)
	}
	shares := make([][]byte, n)
	for i := range shares {
		shares[i] = make([]byte, 2*len(secret))
	}
	coef := make([]int, m)
	for j, s := range secret {
		coef[0] = int(s)
		for k := 1; k < m; k++ {
			c, err := rand.Int(rnd, big.NewInt(prime))
			if err != nil {
				return nil, fmt.Errorf("securitydomain: reading randomness: %w", err)
			}
			coef[k] = int(c.Int64())
		}
		for i := range n {
			x := i + 1
			y := 0
			for k := m - 1; k >= 0; k-- { // Horner
				y = (y*x + coef[k]) % prime
			}
			binary.LittleEndian.PutUint16(shares[i][2*j:], uint16(x<<9|y))
		}
	}
	clear(coef)
	return shares, nil
}

// errShares is returned for shares that cannot be combined.
var errShares = errors.New("securitydomain: the shares do not fit together")

// combine recovers the secret from m or more shares by Lagrange
// interpolation at zero. Shares from different splits, or too few of
// them, yield a wrong secret or an error; callers must authenticate the
// result (the file's data does that).
func combine(shares [][]byte) ([]byte, error) {
	if len(shares) < 2 {
		return nil, errShares
	}
	n := len(shares[0])
	if n == 0 || n%2 != 0 {
		return nil, errShares
	}
	for _, s := range shares {
		if len(s) != n {
			return nil, errShares
		}
	}
	secret := make([]byte, n/2)
	xs := make([]int, len(shares))
	ys := make([]int, len(shares))
	for j := range secret {
		for i, s := range shares {
			w := int(binary.LittleEndian.Uint16(s[2*j:]))
			xs[i], ys[i] = w>>9, w&0x1ff
			if xs[i] == 0 || ys[i] >= prime {
				return nil, errShares
			}
		}
		if j == 0 {
			for a := range xs {
				for b := a + 1; b < len(xs); b++ {
					if xs[a] == xs[b] {
						return nil, fmt.Errorf("securitydomain: two shares are the same custodian's (x=%d)", xs[a])
					}
				}
			}
		}
		v := 0
		for i := range xs {
			num, den := 1, 1
			for k := range xs {
				if k != i {
					num = num * xs[k] % prime
					den = den * ((xs[k] - xs[i] + prime) % prime) % prime
				}
			}
			v = (v + ys[i]*num%prime*inverse(den)) % prime
		}
		if v > 255 {
			return nil, errShares
		}
		secret[j] = byte(v)
	}
	return secret, nil
}

// inverse returns a⁻¹ mod 257 as a^255 (Fermat).
func inverse(a int) int {
	r, b, e := 1, a%prime, prime-2
	for e > 0 {
		if e&1 == 1 {
			r = r * b % prime
		}
		b = b * b % prime
		e >>= 1
	}
	return r
}
