<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests;

use Anonstats\Client\Client;
use Anonstats\Client\Delivery;
use Anonstats\Client\Options;
use Anonstats\Client\Report;
use Anonstats\Client\Tests\Support\CollectorProcess;
use Anonstats\Client\Tests\Support\FakeCollector;
use Anonstats\Client\Tests\Support\Net;
use Anonstats\Client\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

/**
 * The client against the real collector (`anonstats serve` on SQLite, from
 * ANONSTATS_BINARY), scripted fakes for answers the real one cannot be made
 * to give on demand, and the reference client (`anonstats send`) for the
 * file formats.
 */
final class CollectorTest extends TestCase
{
    private TempDir $dir;
    private ?CollectorProcess $collector = null;
    private ?FakeCollector $fake = null;

    protected function setUp(): void
    {
        if (CollectorProcess::binary() === null) {
            self::markTestSkipped('ANONSTATS_BINARY is not set: no collector to test against');
        }
        $this->dir = new TempDir();
    }

    protected function tearDown(): void
    {
        $this->fake?->stop();
        $this->collector?->stop();
        if (isset($this->dir)) {
            $this->dir->remove();
        }
    }

    private function collector(): CollectorProcess
    {
        return $this->collector ??= CollectorProcess::start($this->dir);
    }

    private static function report(): Report
    {
        return Report::update('passbolt', '4.10.1', '4.9.0')
            ->withAttribute('edition', 'ce')
            ->withAttribute('db_engine', 'mariadb')
            ->withCounter('users', 42)
            ->withCounter('resources', 1234)
            ->withFeature('mfa', true)
            ->withFeature('ldap', false);
    }

    private static function installReport(): Report
    {
        return Report::install('passbolt', '4.10.1')->withAttribute('edition', 'ce')->withCounter('users', 3);
    }

    /**
     * @return array{0: int, 1: int} install and update reports stored
     */
    private function events(): array
    {
        $events = $this->collector()->summary()['events'];

        return [$events['install'], $events['update']];
    }

    public function testNothingIsSentWithoutOptIn(): void
    {
        $collector = $this->collector();
        // Something listening where the reports would go: no connection may arrive.
        $listener = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        self::assertNotFalse($listener, $error);
        $trap = 'http://' . stream_socket_get_name($listener, false);

        $cases = [
            'no file' => null,
            'opted out' => "<?php return ['anonymousStatistics' => ['send' => false, 'instanceId' => '25ffebe4-3fdb-484b-bbeb-9725bc31d397']];",
            'invalid file' => "<?php return ['anonymousStatistics' => ['send' => 'maybe']];",
        ];
        foreach ($cases as $case => $text) {
            $path = $this->dir->file(str_replace(' ', '-', $case) . '/anonymous_statistics.php');
            if ($text !== null) {
                mkdir(dirname($path));
                file_put_contents($path, $text);
            }
            foreach ([$collector->url, $trap] as $url) {
                $client = new Client($path, new Options(collector: $url));
                self::assertFalse($client->send(self::installReport()), "{$case}: send() must say it did not send");
                self::assertNotNull($client->lastError());
            }
            $read = [$listener];
            $none = [];
            self::assertSame(0, stream_select($read, $none, $none, 0, 200_000), "{$case}: no connection may be made");
        }
        fclose($listener);
        self::assertSame([0, 0], $this->events(), 'the collector stored nothing');
        self::assertSame(0, $collector->summary()['active_instances']);
    }

    public function testThePreviewIsWhatIsStoredAndAResendIsADuplicate(): void
    {
        $collector = $this->collector();
        $path = $this->dir->file('config/anonymous_statistics.php');
        $client = new Client($path, new Options(collector: $collector->url));
        $client->optIn();
        $reportId = '7f1c2e9a-3b4d-4c5e-8f60-718293a4b5c6';
        $preview = $client->preview(self::report(), $reportId);

        // The previewed bytes, posted as they are, are a valid report...
        [$status, $answer] = Net::http('POST', $collector->url . '/api/v1/reports', $preview);
        self::assertSame(202, $status, $answer);
        self::assertEquals(['status' => 'accepted', 'ignored' => []], json_decode($answer, true));
        // ...and they are what send() posts: the collector recognises them.
        self::assertTrue($client->send(self::report(), $reportId), (string) $client->lastError());
        self::assertSame(Delivery::DUPLICATE, $client->lastDelivery()?->status);
        self::assertSame($reportId, $client->lastReportId());

        self::assertSame([0, 1], $this->events(), 'one update report, counted once');
        self::assertSame(1, $collector->summary()['active_instances']);
        [$code, $out, $err] = CollectorProcess::run(['stats', 'counters', '--database', $collector->database, '--format', 'json', '--k', '1']);
        self::assertSame(0, $code, $err);
        // One install dominates its own totals, so they are withheld; with
        // k = 1 the percentiles show its storage buckets: exact below 100,
        // two significant digits above.
        $rows = [];
        foreach (json_decode($out, true, 512, JSON_THROW_ON_ERROR)['rows'] as $row) {
            $rows[$row['counter']] = $row;
        }
        self::assertSame(42, $rows['users']['p50'], 'the previewed counter is what is stored');
        self::assertSame(1200, $rows['resources']['p50'], 'the previewed counter is what is stored');
    }

    public function testTheSameReportIdTwiceIsStoredOnce(): void
    {
        $collector = $this->collector();
        $client = new Client($this->dir->file('client.json'), new Options(collector: $collector->url));
        $client->optIn();
        self::assertTrue($client->send(self::installReport()), (string) $client->lastError());
        self::assertSame(Delivery::ACCEPTED, $client->lastDelivery()?->status);
        $first = (string) $client->lastReportId();
        self::assertTrue($client->send(self::installReport(), $first));
        self::assertSame(Delivery::DUPLICATE, $client->lastDelivery()?->status);
        self::assertSame([1, 0], $this->events(), 'a retry is counted once');

        self::assertTrue($client->send(self::installReport()));
        self::assertNotSame($first, $client->lastReportId(), 'each send() makes a fresh report id');
        self::assertSame(Delivery::ACCEPTED, $client->lastDelivery()?->status);
        self::assertSame([2, 0], $this->events());
    }

    public function testA503IsRetriedWithTheSameReportIdAfterRetryAfter(): void
    {
        $collector = $this->collector();
        $this->fake = new FakeCollector($this->dir, [
            ['status' => 503, 'retry_after' => '1', 'content_type' => 'application/problem+json',
                'body' => '{"type":"urn:anonstats:problem:overloaded","title":"Service Unavailable","status":503}'],
            ['proxy' => true],
        ], $collector->url);
        $path = $this->dir->file('anonymous_statistics.php');
        $notes = [];
        $client = new Client($path, new Options(collector: $this->fake->url, logger: static function (string $l) use (&$notes): void {
            $notes[] = $l;
        }));
        $client->optIn();
        self::assertTrue($client->send(self::report()), (string) $client->lastError());
        self::assertSame(Delivery::ACCEPTED, $client->lastDelivery()?->status);
        self::assertSame(2, $client->lastDelivery()?->attempts);

        $requests = $this->fake->requests();
        self::assertCount(2, $requests);
        foreach ($requests as $r) {
            self::assertSame('POST', $r['method']);
            self::assertSame('/api/v1/reports', $r['uri']);
            self::assertSame('application/json', $r['content_type']);
            self::assertSame('anonstats-client', $r['user_agent']);
            self::assertSame($client->lastReportId(), json_decode($r['body'], true)['report_id']);
        }
        self::assertSame($requests[0]['body'], $requests[1]['body'], 'the retry sends the same bytes');
        self::assertSame($client->preview(self::report(), $client->lastReportId()), $requests[0]['body'], 'and they are the preview');
        self::assertGreaterThanOrEqual(0.95, $requests[1]['at'] - $requests[0]['at'], 'Retry-After: 1 was honoured');
        self::assertStringContainsString('HTTP 503; retrying in 1.0 s (attempt 2 of 5)', implode("\n", $notes));
        self::assertSame([0, 1], $this->events(), 'stored once');
    }

    public function testARefusalIsFinal(): void
    {
        $this->fake = new FakeCollector($this->dir, [
            ['status' => 400, 'content_type' => 'application/problem+json',
                'body' => '{"status":400,"detail":"product: unknown","errors":[{"field":"product","detail":"product is not in the catalog"}]}'],
        ]);
        $client = new Client($this->dir->file('c.json'), new Options(collector: $this->fake->url));
        $client->optIn();
        self::assertFalse($client->send(self::installReport()));
        self::assertCount(1, $this->fake->requests());
        self::assertStringContainsString('HTTP 400): product: product is not in the catalog', (string) $client->lastError());
    }

    public function testADeadCollectorIsFalseWithinTheBudget(): void
    {
        $client = new Client($this->dir->file('c.json'), new Options(collector: 'http://127.0.0.1:' . Net::freePort(), budget: 2.0));
        $client->optIn();
        $start = microtime(true);
        self::assertFalse($client->send(self::installReport()));
        $elapsed = microtime(true) - $start;
        self::assertLessThan(2.3, $elapsed, 'the time budget holds');
        self::assertGreaterThan(0.2, $elapsed, 'it was retried');
        self::assertStringContainsString('report not sent', (string) $client->lastError());
    }

    public function testASilentCollectorCannotHoldTheHostPastTheBudget(): void
    {
        // Accepts connections (the kernel's backlog) and never answers.
        $listener = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        self::assertNotFalse($listener, $error);
        $client = new Client($this->dir->file('c.json'), new Options(collector: 'http://' . stream_socket_get_name($listener, false), budget: 1.5, requestTimeout: 10.0));
        $client->optIn();
        $start = microtime(true);
        self::assertFalse($client->send(self::installReport()));
        $elapsed = microtime(true) - $start;
        fclose($listener);
        self::assertLessThan(2.0, $elapsed, 'the request timeout was cut to the budget');
        self::assertGreaterThan(1.2, $elapsed);
    }

    public function testForgetErasesTheInstallAndDropsTheId(): void
    {
        $collector = $this->collector();
        $path = $this->dir->file('anonymous_statistics.php');
        $client = new Client($path, new Options(collector: $collector->url));
        $client->optIn('http://collector.in.the.file.invalid');
        self::assertTrue($client->send(self::report()), (string) $client->lastError());
        self::assertSame(1, $collector->summary()['active_instances']);

        $client->optOut();
        $id = (string) $client->optInState()->instanceId;
        self::assertTrue($client->forget('passbolt'), (string) $client->lastError());
        self::assertSame(0, $collector->summary()['active_instances'], 'the install is forgotten');
        $logs = strtolower($collector->logs());
        self::assertStringContainsString('/api/v1/erasures', $logs, 'the erasure reached the new route');
        self::assertStringNotContainsString(strtolower($id), $logs, 'the id is never logged');
        self::assertSame([0, 1], $this->events(), 'the anonymous daily count stays');
        $state = $client->optInState();
        self::assertFalse($state->send);
        self::assertNull($state->instanceId);
        self::assertSame('http://collector.in.the.file.invalid', $state->collector);
        self::assertTrue($client->forget(), 'nothing left to forget');
    }

    public function testForgetFailingLeavesTheFileForAnotherTry(): void
    {
        $path = $this->dir->file('anonymous_statistics.php');
        $client = new Client($path, new Options(collector: 'http://127.0.0.1:' . Net::freePort(), budget: 1.0));
        $client->optIn();
        $before = file_get_contents($path);
        self::assertFalse($client->forget());
        self::assertStringContainsString('not asked to forget', (string) $client->lastError());
        self::assertSame($before, file_get_contents($path));
    }

    public function testTheCatalogCheckStopsTyposOnlyWhenAskedTo(): void
    {
        $collector = $this->collector();
        $typo = self::installReport()->withCounter('userz', 2)->withAttribute('db_engine', 'oracle');
        $check = (new Client($this->dir->file('none.json'), new Options(collector: $collector->url)))->check($typo);
        self::assertNotNull($check);
        self::assertSame(['counters.userz: not in the catalog of product passbolt'], $check->errors);
        self::assertSame(['attributes.db_engine: "oracle" is not a listed value and will be stored as "other"'], $check->warnings);

        $notes = [];
        $logger = static function (string $l) use (&$notes): void {
            $notes[] = $l;
        };
        $strict = new Client($this->dir->file('c.json'), new Options(collector: $collector->url, checkCatalog: true, logger: $logger));
        $strict->optIn();
        self::assertFalse($strict->send($typo));
        self::assertStringContainsString('counters.userz: not in the catalog', (string) $strict->lastError());
        self::assertSame([0, 0], $this->events(), 'refused before sending');
        self::assertTrue($strict->send(self::installReport()->withAttribute('db_engine', 'oracle')), (string) $strict->lastError());
        self::assertStringContainsString('warning: attributes.db_engine', implode("\n", $notes));
        self::assertSame([1, 0], $this->events());

        $lenient = new Client($this->dir->file('c.json'), new Options(collector: $collector->url));
        self::assertTrue($lenient->send($typo), (string) $lenient->lastError());
        self::assertSame(['counters.userz'], $lenient->lastDelivery()?->ignored, 'the collector dropped the unknown name');
        self::assertSame([2, 0], $this->events());

        $dead = new Client($this->dir->file('c.json'), new Options(collector: 'http://127.0.0.1:' . Net::freePort(), budget: 0.5, checkCatalog: true));
        self::assertNull($dead->check($typo));
        self::assertFalse($dead->send(self::installReport()));
        self::assertStringContainsString('report not sent', (string) $dead->lastError());
    }

    /**
     * @return iterable<string, array{0: string}>
     */
    public static function formats(): iterable
    {
        yield 'passbolt PHP' => ['anonymous_statistics.php'];
        yield 'JSON' => ['client.json'];
    }

    /**
     * @dataProvider formats
     */
    public function testThePreviewIsTheReferenceClientsDryRunByteForByte(string $name): void
    {
        $collector = $this->collector();
        $path = $this->dir->file($name);
        $client = new Client($path, new Options(collector: $collector->url));
        $reportId = '30c88dfc-7c27-4ce7-babf-65aa7e29f111';
        foreach (['before opt-in' => false, 'after opt-in' => true] as $when => $optIn) {
            if ($optIn) {
                $client->optIn();
            }
            [$code, $out, $err] = CollectorProcess::run([
                'send', '--config', $path, '--collector', $collector->url, '--dry-run', '--report-id', $reportId,
                '--event', 'update', '--version', '4.10.1', '--previous-version', '4.9.0',
                '--attribute', 'edition=ce', '--attribute', 'db_engine=mariadb',
                '--counter', 'users=42', '--counter', 'resources=1234',
                '--feature', 'mfa=true', '--feature', 'ldap=false',
            ]);
            self::assertSame(0, $code, $err);
            self::assertSame($out, $client->preview(self::report(), $reportId), $when);
        }
        self::assertStringContainsString((string) $client->optInState()->instanceId, $out);
    }

    /**
     * @dataProvider formats
     */
    public function testTheFilesAreTheReferenceClientsFiles(string $name): void
    {
        // The reference client opts in; this client reads its file.
        $rust = $this->dir->file('rust/' . $name);
        [$code, , $err] = CollectorProcess::run(['send', '--config', $rust, '--opt-in', '--collector', 'http://127.0.0.1:8080']);
        self::assertSame(0, $code, $err);
        $state = (new Client($rust))->optInState();
        self::assertTrue($state->send);
        self::assertNotNull($state->instanceId);
        self::assertSame('http://127.0.0.1:8080', $state->collector);

        // Both opt out of the same file: the same bytes.
        $php = $this->dir->file('php/' . $name);
        mkdir(dirname($php));
        copy($rust, $php);
        (new Client($php))->optOut();
        [$code, , $err] = CollectorProcess::run(['send', '--config', $rust, '--opt-out']);
        self::assertSame(0, $code, $err);
        self::assertSame(file_get_contents($rust), file_get_contents($php));

        // This client opts in again; the reference client reads its file.
        (new Client($php))->optIn();
        [$code, $out, $err] = CollectorProcess::run(['send', '--config', $php, '--catalog', self::catalog(), '--dry-run', '--event', 'install', '--version', '4.10.1']);
        self::assertSame(0, $code, $err);
        self::assertSame($state->instanceId, json_decode($out, true)['instance_id']);
    }

    private static function catalog(): string
    {
        return dirname(__DIR__, 3) . '/catalog/passbolt.json';
    }
}

