// Command totp is the seed story's authenticator app: it prints the RFC
// 6238 code (HMAC-SHA1, 6 digits, 30 s) of a base32 secret, as an
// authenticator app shows it, for now or a number of steps ahead.
//
//	totp SECRET [STEPS]
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: totp SECRET [STEPS]")
		os.Exit(2)
	}
	steps := 0
	if len(os.Args) == 3 {
		n, err := strconv.Atoi(os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "totp: STEPS must be a whole number")
			os.Exit(2)
		}
		steps = n
	}
	at := time.Now().Add(time.Duration(steps) * 30 * time.Second)
	code, err := totp.GenerateCodeCustom(os.Args[1], at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		fmt.Fprintln(os.Stderr, "totp:", err)
		os.Exit(1)
	}
	fmt.Println(code)
}
