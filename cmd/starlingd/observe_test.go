package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// lockedBuffer is a log sink safe for the node's goroutines and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The first log line says how the node runs (JSON with --log-format json),
// and --metrics-listen serves /healthz and /readyz beside /metrics.
func TestStartupLineAndHealthEndpoints(t *testing.T) {
	metrics := freeAddr(t)
	c, err := parseConfig([]string{"--listen", freeAddr(t), "--metrics-listen", metrics, "--data-dir", t.TempDir(),
		"--bcrypt-cost", "4", "--log-format", "json"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	stop := startLogging(t, c, &logs)
	defer stop()

	var first map[string]any
	line, _, _ := strings.Cut(logs.String(), "\n")
	if err := json.Unmarshal([]byte(line), &first); err != nil {
		t.Fatalf("first log line is not JSON: %q", line)
	}
	if first["msg"] != "starlingd starting" || first["backend"] != "sqlite" || first["token_secret_generated"] != true || first["tls"] != false || first["listen"] != c.Listen {
		t.Fatalf("start-up line %v", first)
	}
	if strings.Contains(logs.String(), "token_secret\":\"") {
		t.Fatal("a secret reached the log")
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		res, err := http.Get("http://" + metrics + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", path, res.StatusCode)
		}
	}
}
