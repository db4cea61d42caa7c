<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests;

use Anonstats\Client\InvalidReportException;
use Anonstats\Client\Report;
use PHPUnit\Framework\TestCase;

final class ReportTest extends TestCase
{
    private const REPORT_ID = '30c88dfc-7c27-4ce7-babf-65aa7e29f111';
    private const INSTANCE_ID = '25ffebe4-3fdb-484b-bbeb-9725bc31d397';

    public function testTheBodyIsTheReferenceClientsFormat(): void
    {
        $report = Report::update('passbolt', '4.10.1', '4.9.0')
            ->withFeature('mfa', true)
            ->withCounter('users', 42)
            ->withCounter('groups', 5)
            ->withAttribute('edition', 'ce');
        $expected = <<<'JSON'
            {
              "schema_version": 1,
              "report_id": "30c88dfc-7c27-4ce7-babf-65aa7e29f111",
              "instance_id": "25ffebe4-3fdb-484b-bbeb-9725bc31d397",
              "product": "passbolt",
              "event": "update",
              "version": "4.10.1",
              "previous_version": "4.9.0",
              "attributes": {
                "edition": "ce"
              },
              "counters": {
                "groups": 5,
                "users": 42
              },
              "features": {
                "mfa": true
              }
            }

            JSON;
        self::assertSame($expected, $report->body(self::REPORT_ID, self::INSTANCE_ID));
        self::assertSame($expected, $report->body(strtoupper(self::REPORT_ID), strtoupper(self::INSTANCE_ID)), 'ids are written in lower case');
    }

    public function testAbsentIdsAndEmptySectionsAreLeftOut(): void
    {
        self::assertSame(
            "{\n  \"schema_version\": 1,\n  \"report_id\": \"" . self::REPORT_ID . "\",\n  \"product\": \"passbolt\",\n"
            . "  \"event\": \"install\",\n  \"version\": \"5.0.0-rc.1\"\n}\n",
            Report::install('passbolt', '5.0.0-rc.1')->body(self::REPORT_ID, null)
        );
    }

    public function testReportsAreImmutable(): void
    {
        $base = Report::install('passbolt', '4.10.1');
        $base->withCounter('users', 1);
        self::assertStringNotContainsString('users', $base->body(self::REPORT_ID, null));
    }

    public function testFromArrayTakesTheCountsFileFields(): void
    {
        $report = Report::fromArray([
            'product' => 'passbolt', 'event' => 'install', 'version' => '4.10.1',
            'attributes' => ['edition' => 'ce'], 'counters' => ['users' => 42], 'features' => ['mfa' => false],
        ]);
        self::assertSame(
            Report::install('passbolt', '4.10.1')->withAttribute('edition', 'ce')->withCounter('users', 42)->withFeature('mfa', false)->body(self::REPORT_ID, null),
            $report->body(self::REPORT_ID, null)
        );
        $this->expectException(\InvalidArgumentException::class);
        Report::fromArray(['product' => 'passbolt', 'event' => 'install', 'version' => '4.10.1', 'instance_id' => self::INSTANCE_ID]);
    }

    public function testFromArrayRefusesWrongTypes(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        Report::fromArray(['product' => 'passbolt', 'event' => 'install', 'version' => '4.10.1', 'counters' => ['users' => '42']]);
    }

    /**
     * @return iterable<string, array{0: Report, 1: string}>
     */
    public static function brokenReports(): iterable
    {
        yield 'event' => [new Report('passbolt', 'upgrade', '4.10.1'), 'event:'];
        yield 'build metadata' => [Report::install('passbolt', '4.10.1+build5'), 'version:'];
        yield 'words in a pre-release' => [Report::install('passbolt', '4.10.1-acme'), 'version:'];
        yield 'leading zero' => [Report::install('passbolt', '4.010.1'), 'version:'];
        yield 'too long' => [Report::install('passbolt', '1.1.1-rc.' . str_repeat('1', 30)), 'version:'];
        yield 'update without previous version' => [new Report('passbolt', 'update', '4.10.1'), 'previous_version: an update'];
        yield 'install with previous version' => [new Report('passbolt', 'install', '4.10.1', '4.9.0'), 'previous_version: an install'];
        yield 'negative counter' => [Report::install('passbolt', '4.10.1')->withCounter('users', -1), 'counters.users: must not be negative'];
        yield 'a name no catalog has' => [Report::install('passbolt', '4.10.1')->withFeature('Two Factor', true), 'features.Two Factor:'];
        yield 'product' => [Report::install('Passbolt CE', '4.10.1'), 'product:'];
    }

    /**
     * @dataProvider brokenReports
     */
    public function testMistakesAreFoundBeforeSending(Report $report, string $problem): void
    {
        self::assertCount(1, $report->problems());
        self::assertStringStartsWith($problem, $report->problems()[0]);
        try {
            $report->body(self::REPORT_ID, null);
            self::fail('body() must refuse an invalid report');
        } catch (InvalidReportException $e) {
            self::assertSame($report->problems(), $e->problems());
        }
    }

    public function testValidVersions(): void
    {
        foreach (['0.0.0', '1.6.10', '4.10.1', '5.0.0-rc.1', '5.0.0-beta', '5.0.0-dev.0'] as $v) {
            self::assertSame([], Report::install('passbolt', $v)->problems(), $v);
        }
    }

    public function testTheCatalogCheckIsTheReferenceClients(): void
    {
        $catalog = json_decode((string) file_get_contents(dirname(__DIR__, 3) . '/catalog/passbolt.json'), true);
        $ok = Report::update('passbolt', '4.10.1', '4.9.0')->withAttribute('edition', 'ce')->withCounter('users', 42)->withFeature('mfa', true);
        self::assertTrue($ok->checkAgainst($catalog)->isOk());
        self::assertSame([], $ok->checkAgainst($catalog)->warnings);

        $check = $ok->withCounter('userz', 1)->withCounter('users', 1_000_001)->withAttribute('db_engine', 'oracle')->checkAgainst($catalog);
        self::assertSame([
            'counters.userz: not in the catalog of product passbolt',
            'counters.users: must be at most 1000000',
        ], $check->errors);
        self::assertSame(['attributes.db_engine: "oracle" is not a listed value and will be stored as "other"'], $check->warnings);

        self::assertSame(
            ['product: product is not in the catalog (see GET /api/v1/catalog)'],
            Report::install('nextcloud', '30.0.1')->checkAgainst($catalog)->errors
        );
    }

    public function testIdsMustBeUuids(): void
    {
        $this->expectException(InvalidReportException::class);
        Report::install('passbolt', '4.10.1')->body('not-a-uuid', null);
    }
}
