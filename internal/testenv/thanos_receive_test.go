package testenv

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestThanosReceiveStartsAgainAfterThePruneRace: a stand-in for thanos that
// crashes on its first start with the prune race's stack, then serves
// /-/ready, is started again and found ready; one that crashes otherwise
// is not.
func TestThanosReceiveStartsAgainAfterThePruneRace(t *testing.T) {
	for name, tc := range map[string]struct {
		crash string
		ok    bool
	}{
		"prune race":    {"receive.(*tenant).shouldBeMarkedInactive(0x0)", true},
		"another crash": {"some other failure", false},
	} {
		t.Run(name, func(t *testing.T) {
			script := filepath.Join(t.TempDir(), "thanos")
			require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
for a in "$@"; do case "$a" in --http-address=*) addr="${a#--http-address=}";; esac; done
if [ ! -e started-once ]; then
	touch started-once
	echo "panic: runtime error: invalid memory address or nil pointer dereference"
	echo "`+tc.crash+`"
	exit 2
fi
mkdir -p www/-
touch www/-/ready
exec python3 -m http.server --bind 127.0.0.1 --directory www "${addr##*:}"
`), 0o755))
			t.Setenv("CASCADE_THANOS", script)
			ring, err := StartThanosReceive(t.TempDir(), 1, 1)
			if !tc.ok {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			ring.Stop()
		})
	}
}
