package clients

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/haven-ha/haven/internal/drill"
	"github.com/haven-ha/haven/internal/e2e/e2etest"
)

// phpSessions is a PHP page's session code, run for many visitors in one
// process: PHP's own session module with phpredis's handler
// (session.save_handler=redis) keeps $_SESSION in the store, as a PHP web
// application configured for Redis sessions does. Each visitor (session id
// phpN) gets one more visit counted and its cart kept; the script prints
// the visits it found before counting, one line per visitor.
const phpSessions = `<?php
$n = (int)$argv[1];
for ($i = 0; $i < $n; $i++) {
    session_id("php" . $i);
    if (!session_start()) { fwrite(STDERR, "session_start failed for php$i\n"); exit(1); }
    $seen = $_SESSION["visits"] ?? 0;
    if ($seen > 0 && ($_SESSION["cart"] ?? null) !== ["user" => $i, "items" => [1, 2, 3]]) {
        fwrite(STDERR, "php$i: cart lost or changed: " . json_encode($_SESSION) . "\n"); exit(1);
    }
    $_SESSION["visits"] = $seen + 1;
    $_SESSION["cart"] = ["user" => $i, "items" => [1, 2, 3]];
    if (!session_write_close()) { fwrite(STDERR, "session_write_close failed for php$i\n"); exit(1); }
    echo $seen, "\n";
}
`

// php runs phpSessions for n visitors against the session store at addr
// (TLS, verified against ca, with the sandbox's password) and returns the
// visits each had before. Debian's php-cli and php-redis.
func php(t *testing.T, ca, addr string, n int) []string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// phpredis 5.3 takes no TLS options in session.save_path for a single
	// server: PHP's default CA file (openssl.cafile) verifies the agent.
	cmd := exec.CommandContext(ctx, "php",
		"-d", "session.save_handler=redis",
		"-d", fmt.Sprintf(`session.save_path="tls://%s:%s?auth=%s&timeout=5&read_timeout=5"`, host, port, drill.SessionsPassword),
		"-d", "openssl.cafile="+ca,
		"-d", "session.use_cookies=0",
		"-d", "session.cache_limiter=",
		"-d", "session.gc_maxlifetime=3600",
		"-d", "display_errors=stderr",
		"-d", "error_reporting=-1",
		"-r", strings.TrimPrefix(phpSessions, "<?php\n"), "--", fmt.Sprint(n))
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("php (install Debian's php-cli and php-redis): %v: %s%s", err, out, stderr)
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n")
}

// wantVisits wants every visitor to have had visits before.
func wantVisits(t *testing.T, got []string, n, visits int, when string) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%s: php printed %d lines, want %d: %q", when, len(got), n, got)
	}
	for i, v := range got {
		if v != fmt.Sprint(visits) {
			t.Fatalf("%s: visitor php%d had %s visits, want %d (its session was lost)", when, i, v, visits)
		}
	}
}

// TestPHPSessionsSurviveFailover: a PHP application's sessions (PHP's
// session module with phpredis's redis save handler, the setup PHP
// frameworks use for Redis sessions) written through the active agent are
// all there, intact, on the new active after a kill -9 of the old one, and
// the application goes on updating them there.
func TestPHPSessionsSurviveFailover(t *testing.T) {
	t.Parallel()
	sb := e2etest.NewSandbox(t, drill.SandboxOptions{Bin: havenBin, Timing: "ci", Sessions: true})
	active := waitActive(t, sb, "")
	waitWritable(t, sb, active)
	const n = 50
	wantVisits(t, php(t, sb.CAFile(), sb.Node(active).Sessions, n), n, 0, "first visit")
	wantVisits(t, php(t, sb.CAFile(), sb.Node(active).Sessions, n), n, 1, "second visit, same active")
	// The sessions are phpredis's keys, with the lifetime PHP gave them.
	if got := redisCLI(t, sb.CAFile(), sb.Node(active).Sessions, "TTL PHPREDIS_SESSION:php7\n"); got[0] == "-2" || got[0] == "-1" {
		t.Fatalf("TTL of a PHP session: %q, want about 3600", got)
	}

	if err := sb.StopAgent(active, syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	next := waitActive(t, sb, active)
	t.Logf("kill -9 %s: %s is active", active, next)
	waitWritable(t, sb, next)
	wantVisits(t, php(t, sb.CAFile(), sb.Node(next).Sessions, n), n, 2, "after kill -9 of the active")
	wantVisits(t, php(t, sb.CAFile(), sb.Node(next).Sessions, n), n, 3, "next visit on the new active")
}
