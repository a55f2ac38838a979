// Package redistest starts real redis-server processes for tests: for the
// integration tests of code that uses Busline's bridge, and for Busline's
// own.
//
//	func TestOrdersReachTheOtherInstance(t *testing.T) {
//		srv := redistest.Start(t, nil) // a fresh server on a free 127.0.0.1 port
//		rdb := srv.Client(t)           // a go-redis client, closed when the test ends
//		...                            // the server is killed when the test ends
//	}
//
// Each [Start] runs its own redis-server process on a free loopback port,
// with its configuration, data, log, ACL file and TLS material in a
// t.TempDir(). Nothing here imitates Redis: a test talks to the server
// production runs, TLS ([Options].TLS), ACL users (Options.ACL) and the
// append-only file (Options.AppendOnly) included, and can make it fail the
// ways a production server fails: [Server.Kill] is a crash, [Server.Freeze]
// a stalled host, and [Server.Restart] brings it back on the same port with
// the same data directory.
//
// Servers also come in groups, for code that must survive the failure of a
// master. [StartCluster] forms a Redis Cluster of masters;
// [StartClusterWith] one whose masters have replicas, so that a test can
// kill a master and wait for its replica's promotion ([Cluster.WaitMaster])
// or hand its slots over gracefully ([Cluster.Failover]). [StartSentinel]
// starts a master, its replicas and the Redis Sentinel processes that fail
// it over, for clients made with go-redis's NewFailoverClient
// ([Sentinel.FailoverOptions], [Sentinel.WaitFailover]). Each measures how
// long the failover took, so that a test can report it.
//
// The test owns the processes: they are never daemonized, each runs in a
// process group of its own, and a t.Cleanup kills it with SIGKILL and reaps
// it, so no server outlives its test and no goroutine of this package
// outlives its server. On Linux the kernel also kills the servers if the
// test binary dies without running its cleanups, as it does on a go test
// timeout. Servers share nothing: parallel tests may each start their own.
//
// # Requirements
//
// redis-server and redis-cli of Redis 7.0 or later on PATH (Debian and
// Ubuntu: apt-get install redis-server redis-tools; macOS: brew install
// redis), on Linux or another Unix system. Sentinels run as redis-server
// in sentinel mode (redis-server sentinel.conf --sentinel, what the
// redis-sentinel command runs), so they need nothing more. In Busline's repository,
// `bash scripts/test.sh` installs them. A missing redis-server fails the
// test with a message saying what to install, rather than skipping it: an
// integration test that silently does not run proves nothing. A test that
// should rather be skipped checks first:
//
//	if _, err := exec.LookPath("redis-server"); err != nil {
//		t.Skip("redis-server is not installed")
//	}
//
// The servers listen on 127.0.0.1 only, without a password for the default
// user (protected-mode off), and persist nothing unless asked: they are for
// tests, not for production.
package redistest
