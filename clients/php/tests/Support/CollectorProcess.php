<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests\Support;

/**
 * The real collector (`anonstats serve`) on a port of its choosing and a
 * fresh SQLite database, and the `anonstats` command line next to it.
 */
final class CollectorProcess
{
    /** @var resource */
    private $process;

    private function __construct(
        public readonly string $url,
        public readonly string $database,
        private readonly string $log,
        $process,
    ) {
        $this->process = $process;
    }

    /**
     * The binary from ANONSTATS_BINARY, or null when it is not set.
     */
    public static function binary(): ?string
    {
        $binary = getenv('ANONSTATS_BINARY');

        return is_string($binary) && $binary !== '' ? $binary : null;
    }

    /**
     * Starts `anonstats serve --bind 127.0.0.1:0` on `<dir>/a.db`, reads the
     * port it bound from its JSON log line, and waits for GET /readyz.
     */
    public static function start(TempDir $dir): self
    {
        $binary = self::binary() ?? throw new \RuntimeException('ANONSTATS_BINARY is not set');
        $database = $dir->file('a.db');
        $log = $dir->file('collector.log');
        $process = proc_open(
            [$binary, '--log-format', 'json', 'serve', '--bind', '127.0.0.1:0', '--database', $database,
                '--workers', '1', '--shutdown-timeout', '1', '--prune-interval-hours', '0'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $log, 'a'], 2 => ['file', $log, 'a']],
            $pipes,
            null,
            self::environment()
        );
        if (!is_resource($process)) {
            throw new \RuntimeException("cannot start {$binary}");
        }
        $until = microtime(true) + 30;
        $port = null;
        while ($port === null && microtime(true) < $until) {
            foreach (file($log) ?: [] as $line) {
                $event = json_decode($line, true);
                if (is_array($event) && ($event['message'] ?? '') === 'anonstats collector listening') {
                    $port = (int) $event['port'];
                }
            }
            if ($port === null) {
                if (!proc_get_status($process)['running']) {
                    throw new \RuntimeException('the collector exited: ' . file_get_contents($log));
                }
                usleep(50_000);
            }
        }
        if ($port === null) {
            proc_terminate($process);
            throw new \RuntimeException('the collector did not say its port: ' . file_get_contents($log));
        }
        $collector = new self("http://127.0.0.1:{$port}", $database, $log, $process);
        while (microtime(true) < $until) {
            if (Net::http('GET', $collector->url . '/readyz')[0] === 200) {
                return $collector;
            }
            usleep(50_000);
        }
        $collector->stop();
        throw new \RuntimeException('the collector never became ready: ' . file_get_contents($log));
    }

    /**
     * Stops the collector (SIGTERM, then SIGKILL after 5 s).
     */
    public function stop(): void
    {
        if (!is_resource($this->process)) {
            return;
        }
        proc_terminate($this->process, 15);
        $until = microtime(true) + 5;
        while (proc_get_status($this->process)['running'] && microtime(true) < $until) {
            usleep(20_000);
        }
        if (proc_get_status($this->process)['running']) {
            proc_terminate($this->process, 9);
        }
        proc_close($this->process);
    }

    /**
     * `anonstats stats summary --format json --k 1` on this database: k is
     * 1 so that the test's handful of reports is shown, not hidden.
     *
     * @return array<string, mixed>
     */
    public function summary(): array
    {
        [$code, $out, $err] = self::run(['stats', 'summary', '--database', $this->database, '--format', 'json', '--k', '1']);
        if ($code !== 0) {
            throw new \RuntimeException("anonstats stats summary failed: {$err}");
        }

        return json_decode($out, true, 512, JSON_THROW_ON_ERROR);
    }

    /**
     * Everything the collector logged so far (JSON lines, at trace level).
     */
    public function logs(): string
    {
        return (string) file_get_contents($this->log);
    }

    /**
     * Runs the binary with `$args` and waits for it.
     *
     * @param list<string> $args
     *
     * @return array{0: int, 1: string, 2: string} exit code, stdout, stderr
     */
    public static function run(array $args): array
    {
        $binary = self::binary() ?? throw new \RuntimeException('ANONSTATS_BINARY is not set');
        $process = proc_open(
            array_merge([$binary], $args),
            [0 => ['file', '/dev/null', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            self::environment()
        );
        if (!is_resource($process)) {
            throw new \RuntimeException("cannot run {$binary}");
        }
        // The outputs are small; stderr is read after stdout is closed.
        $out = (string) stream_get_contents($pipes[1]);
        $err = (string) stream_get_contents($pipes[2]);
        fclose($pipes[1]);
        fclose($pipes[2]);

        return [proc_close($process), $out, $err];
    }

    /**
     * The test's environment, without the settings that would point the
     * binary at another file, collector or database.
     *
     * @return array<string, string>
     */
    private static function environment(): array
    {
        $env = getenv();
        foreach (['ANONSTATS_CLIENT_CONFIG', 'ANONSTATS_COLLECTOR', 'ANONSTATS_DATABASE_URL', 'DATABASE_URL', 'ANONSTATS_LOG_FORMAT', 'ANONSTATS_BIND', 'ANONSTATS_CATALOG'] as $name) {
            unset($env[$name]);
        }

        // Every level, so that tests can check what is never logged.
        $env['RUST_LOG'] = 'trace';

        return $env;
    }
}
