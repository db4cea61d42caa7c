<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests;

use Anonstats\Client\Client;
use Anonstats\Client\Delivery;
use Anonstats\Client\Options;
use Anonstats\Client\Report;
use Anonstats\Client\Response;
use Anonstats\Client\Tests\Support\TempDir;
use Anonstats\Client\Transport;
use Anonstats\Client\TransportException;
use PHPUnit\Framework\TestCase;

/**
 * The facade over a scripted transport: no network, no collector.
 */
final class ClientTest extends TestCase
{
    private TempDir $dir;

    protected function setUp(): void
    {
        $this->dir = new TempDir();
    }

    protected function tearDown(): void
    {
        $this->dir->remove();
    }

    /**
     * @param list<Response|\Throwable> $answers
     */
    private static function transport(array $answers): Transport
    {
        return new class ($answers) implements Transport {
            /** @var list<array{method: string, url: string, body: ?string, connect: float, timeout: float, at: float}> */
            public array $calls = [];

            /** @param list<Response|\Throwable> $answers */
            public function __construct(private array $answers)
            {
            }

            public function request(string $method, string $url, ?string $body, float $connectTimeout, float $timeout): Response
            {
                $this->calls[] = ['method' => $method, 'url' => $url, 'body' => $body, 'connect' => $connectTimeout, 'timeout' => $timeout, 'at' => microtime(true)];
                $answer = count($this->answers) > 1 ? array_shift($this->answers) : $this->answers[0];
                if ($answer instanceof \Throwable) {
                    throw $answer;
                }

                return $answer;
            }
        };
    }

    private function optedIn(): string
    {
        $path = $this->dir->file('anonymous_statistics.php');
        (new Client($path))->optIn();

        return $path;
    }

    public function testSendNeverThrowsIntoTheHostApplication(): void
    {
        $transport = self::transport([new \Error('a bug in the transport')]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://collector.invalid'), $transport);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        self::assertStringContainsString('a bug in the transport', (string) $client->lastError());
        self::assertFalse($client->forget());

        $logger = static function (string $line): void {
            throw new \RuntimeException('the logger is broken too');
        };
        $client = new Client($this->optedIn(), new Options(collector: 'http://collector.invalid', logger: $logger), self::transport([new Response(202, '{"status":"accepted","ignored":[]}')]));
        self::assertTrue($client->send(Report::install('passbolt', '4.10.1')));
        self::assertFalse($client->send(Report::install('passbolt', 'not a version')));
        self::assertStringContainsString('version:', (string) $client->lastError());
    }

    public function testRetriesUseTheSameBodyAndStopAtARefusal(): void
    {
        $transport = self::transport([
            new TransportException('connection reset'),
            new Response(502, ''),
            new Response(400, '{"detail":"version: bad","errors":[{"field":"version","detail":"bad"},{"field":"event","detail":"enum"}]}'),
        ]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid/', baseDelay: 0.01), $transport);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        self::assertCount(3, $transport->calls);
        self::assertSame('http://c.invalid/api/v1/reports', $transport->calls[0]['url']);
        self::assertSame('POST', $transport->calls[0]['method']);
        self::assertSame($transport->calls[0]['body'], $transport->calls[2]['body']);
        self::assertStringContainsString('HTTP 400): version: bad; event: enum', (string) $client->lastError());
    }

    public function testOnlyAcceptedAndDuplicateAreSuccesses(): void
    {
        foreach ([[202, true, Delivery::ACCEPTED], [200, true, Delivery::DUPLICATE], [201, false, null], [500, false, null], [404, false, null]] as [$status, $ok, $delivery]) {
            $transport = self::transport([new Response($status, '{"status":"accepted","ignored":["attributes.colour"]}')]);
            $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid'), $transport);
            self::assertSame($ok, $client->send(Report::install('passbolt', '4.10.1')), "HTTP {$status}");
            self::assertSame($delivery, $client->lastDelivery()?->status);
            self::assertCount(1, $transport->calls, "HTTP {$status} is not retried");
        }
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid'), self::transport([new Response(202, '{"status":"accepted","ignored":["attributes.colour"]}')]));
        self::assertTrue($client->send(Report::install('passbolt', '4.10.1')));
        self::assertSame(['attributes.colour'], $client->lastDelivery()?->ignored);
    }

    public function testTimeoutsAreCutToTheTimeBudget(): void
    {
        $transport = self::transport([new Response(503, '')]);
        $options = new Options(collector: 'http://c.invalid', budget: 1.0, requestTimeout: 10.0, retries: 100, baseDelay: 0.1, maxDelay: 0.2);
        $client = new Client($this->optedIn(), $options, $transport);
        $start = microtime(true);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        $elapsed = microtime(true) - $start;
        self::assertLessThan(1.1, $elapsed);
        self::assertGreaterThan(2, count($transport->calls));
        foreach ($transport->calls as $call) {
            self::assertLessThanOrEqual(1.0 - ($call['at'] - $start) + 0.01, $call['timeout'], 'no attempt may outlast the budget');
            self::assertLessThanOrEqual($call['timeout'], $call['connect']);
        }
        self::assertStringContainsString('time budget', (string) $client->lastError());
    }

    public function testARetryAfterLongerThanTheCapEndsTheRetries(): void
    {
        $transport = self::transport([new Response(429, '', '120')]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid', budget: 300.0), $transport);
        $start = microtime(true);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        self::assertLessThan(0.5, microtime(true) - $start);
        self::assertCount(1, $transport->calls);
        self::assertStringContainsString('asks to wait 120 s', (string) $client->lastError());
    }

    public function testARetryAfterDateIsHonoured(): void
    {
        $soon = gmdate('D, d M Y H:i:s \G\M\T', time() + 1);
        $transport = self::transport([new Response(503, '', $soon), new Response(202, '{"status":"accepted","ignored":[]}')]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid'), $transport);
        self::assertTrue($client->send(Report::install('passbolt', '4.10.1')));
        self::assertCount(2, $transport->calls);
        self::assertGreaterThan(0.0, $transport->calls[1]['at'] - $transport->calls[0]['at']);
        self::assertSame(2, $client->lastDelivery()?->attempts);
    }

    public function testARetryAfterInThePastOrUnreadableStillRetries(): void
    {
        $transport = self::transport([
            new Response(503, '', 'Wed, 21 Oct 2015 07:28:00 GMT'),
            new Response(429, '', 'soon'),
            new Response(200, '{"status":"duplicate"}'),
        ]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid', baseDelay: 0.05), $transport);
        $start = microtime(true);
        self::assertTrue($client->send(Report::install('passbolt', '4.10.1')));
        self::assertLessThan(0.5, microtime(true) - $start);
        self::assertSame(Delivery::DUPLICATE, $client->lastDelivery()?->status);
        self::assertSame(3, $client->lastDelivery()?->attempts);
    }

    public function testABadUrlIsNotRetried(): void
    {
        $client = new Client($this->optedIn(), new Options(collector: 'ftp://c.invalid'));
        $start = microtime(true);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        self::assertLessThan(0.2, microtime(true) - $start, 'no backoff: a URL curl cannot use is final');
        self::assertStringNotContainsString('attempt(s)', (string) $client->lastError());
    }

    public function testNotOptedInMeansNoRequestAtAll(): void
    {
        $transport = self::transport([new Response(202, '{}')]);
        $path = $this->dir->file('c.json');
        $client = new Client($path, new Options(collector: 'http://c.invalid'), $transport);
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        $client->optIn();
        $client->optOut();
        self::assertFalse($client->send(Report::install('passbolt', '4.10.1')));
        self::assertStringContainsString('not opted in', (string) $client->lastError());
        self::assertSame([], $transport->calls);
    }

    public function testPreviewIsTheBodySendPosts(): void
    {
        $transport = self::transport([new Response(202, '{"status":"accepted","ignored":[]}')]);
        $client = new Client($this->optedIn(), new Options(collector: 'http://c.invalid'), $transport);
        $report = Report::update('passbolt', '4.10.1', '4.9.0')->withCounter('users', 3);
        self::assertTrue($client->send($report));
        self::assertSame($client->preview($report, $client->lastReportId()), $transport->calls[0]['body']);
        self::assertNotSame($client->preview($report), $client->preview($report), 'a fresh report id every time');
    }

    public function testPreviewNeverConnectsEvenToAListeningCollector(): void
    {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        self::assertNotFalse($server, "cannot listen: {$error}");
        $url = 'http://' . stream_socket_get_name($server, false);
        $report = Report::install('passbolt', '4.10.1')->withCounter('users', 3);
        $path = $this->dir->file('anonymous_statistics.php');
        try {
            // The real transport: a connection attempt would reach $server.
            $client = new Client($path, new Options(collector: $url, checkCatalog: true));
            $before = json_decode($client->preview($report), true);
            $client->optIn($url);
            $after = json_decode($client->preview($report), true);

            self::assertArrayNotHasKey('instance_id', $before);
            self::assertSame($client->optInState()->instanceId, $after['instance_id']);
            self::assertSame(3, $after['counters']['users']);
            self::assertFalse(@stream_socket_accept($server, 1.0), 'preview() and optIn() connect to nothing');
        } finally {
            fclose($server);
        }
    }

    public function testForgetWithoutAProductLeavesItToTheCollector(): void
    {
        $transport = self::transport([new Response(202, '{"status":"forgotten"}')]);
        $path = $this->optedIn();
        $id = (new Client($path))->optInState()->instanceId;
        $client = new Client($path, new Options(collector: 'http://c.invalid'), $transport);
        self::assertTrue($client->forget());
        self::assertSame(
            ['instance_id' => $id],
            json_decode((string) $transport->calls[0]['body'], true, 512, JSON_THROW_ON_ERROR),
        );
    }

    public function testForgetWithoutAnIdAsksNothing(): void
    {
        $transport = self::transport([new Response(202, '{}')]);
        $client = new Client($this->dir->file('none.json'), new Options(collector: 'http://c.invalid'), $transport);
        self::assertTrue($client->forget());
        self::assertSame([], $transport->calls);
    }

    public function testForgetUsesTheErasureRoute(): void
    {
        $transport = self::transport([new Response(202, '{"status":"forgotten"}')]);
        $path = $this->optedIn();
        $id = (new Client($path))->optInState()->instanceId;
        $client = new Client($path, new Options(collector: 'http://c.invalid'), $transport);
        self::assertTrue($client->forget('passbolt'));
        self::assertSame('POST', $transport->calls[0]['method']);
        self::assertSame('http://c.invalid/api/v1/erasures', $transport->calls[0]['url'], 'the id is not in the URL');
        self::assertSame(
            ['instance_id' => $id, 'product' => 'passbolt'],
            json_decode((string) $transport->calls[0]['body'], true, 512, JSON_THROW_ON_ERROR),
        );
        $state = $client->optInState();
        self::assertFalse($state->send);
        self::assertNull($state->instanceId);
    }
}
