<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests\Support;

/**
 * A scripted collector (`php -S` with fake-router.php) that records every
 * request, and can forward some to a real collector.
 */
final class FakeCollector
{
    /** @var resource */
    private $process;

    /**
     * @param list<array<string, mixed>> $script the answers, in order; the last one repeats
     * @param string|null                $upstream where `{"proxy": true}` answers forward to
     */
    public function __construct(private readonly TempDir $dir, array $script, ?string $upstream = null)
    {
        file_put_contents($dir->file('script.json'), json_encode($script));
        $port = Net::freePort();
        $env = getenv();
        $env['FAKE_DIR'] = $dir->path;
        $env['FAKE_UPSTREAM'] = $upstream ?? '';
        $process = proc_open(
            [PHP_BINARY, '-S', "127.0.0.1:{$port}", __DIR__ . '/fake-router.php'],
            [0 => ['file', '/dev/null', 'r'], 1 => ['file', $dir->file('fake.log'), 'a'], 2 => ['file', $dir->file('fake.log'), 'a']],
            $pipes,
            null,
            $env
        );
        if (!is_resource($process)) {
            throw new \RuntimeException('cannot start php -S');
        }
        $this->process = $process;
        $this->url = "http://127.0.0.1:{$port}";
        if (!Net::waitForPort($port, 10)) {
            $this->stop();
            throw new \RuntimeException('php -S did not start: ' . file_get_contents($dir->file('fake.log')));
        }
    }

    public readonly string $url;

    /**
     * The requests received so far.
     *
     * @return list<array<string, mixed>>
     */
    public function requests(): array
    {
        $log = $this->dir->file('requests.jsonl');
        if (!is_file($log)) {
            return [];
        }

        return array_map(
            static fn (string $l): array => json_decode($l, true, 512, JSON_THROW_ON_ERROR),
            file($log, FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES) ?: []
        );
    }

    public function stop(): void
    {
        if (is_resource($this->process)) {
            proc_terminate($this->process, 9);
            proc_close($this->process);
        }
    }
}
