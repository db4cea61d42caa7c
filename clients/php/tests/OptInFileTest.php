<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests;

use Anonstats\Client\Client;
use Anonstats\Client\OptIn;
use Anonstats\Client\OptInException;
use Anonstats\Client\OptInFile;
use Anonstats\Client\Tests\Support\TempDir;
use PHPUnit\Framework\TestCase;

final class OptInFileTest extends TestCase
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

    public function testAMissingFileMeansNotOptedIn(): void
    {
        $state = (new OptInFile($this->dir->file('none.json')))->load();
        self::assertFalse($state->send);
        self::assertNull($state->instanceId);
        self::assertNull($state->collector);
        self::assertFalse((new Client($this->dir->file('none.php')))->isOptedIn());
    }

    public function testJsonAndPhpFormsRoundTrip(): void
    {
        foreach (['c.json', 'anonymous_statistics.php'] as $name) {
            $file = new OptInFile($this->dir->file('sub/deeper/' . $name));
            $in = (new OptIn(collector: "http://127.0.0.1:8080/it's\\"))->optedIn();
            $file->save($in);
            self::assertEquals($in, $file->load(), $name);
            $out = $in->optedOut();
            $file->save($out);
            self::assertEquals($out, $file->load(), $name);
            self::assertSame($in->instanceId, $out->instanceId, 'opting out keeps the id');
        }
    }

    public function testTheFormsAreTheReferenceClientsByteForByte(): void
    {
        $state = new OptIn(true, '25ffebe4-3fdb-484b-bbeb-9725bc31d397', 'http://127.0.0.1:8080');
        $json = new OptInFile($this->dir->file('client.json'));
        $json->save($state);
        self::assertSame(
            "{\n  \"send\": true,\n  \"instance_id\": \"25ffebe4-3fdb-484b-bbeb-9725bc31d397\",\n  \"collector\": \"http://127.0.0.1:8080\"\n}\n",
            file_get_contents($json->path())
        );
        $php = new OptInFile($this->dir->file('anonymous_statistics.php'));
        $php->save($state->optedOut());
        self::assertSame(
            "<?php\n// Anonymous usage statistics: set 'send' to false to stop sending reports.\nreturn [\n"
            . "    'anonymousStatistics' => [\n        'send' => false,\n"
            . "        'instanceId' => '25ffebe4-3fdb-484b-bbeb-9725bc31d397',\n"
            . "        'collector' => 'http://127.0.0.1:8080',\n    ],\n];\n",
            file_get_contents($php->path())
        );
        // The PHP form is a real configuration file the application can include.
        self::assertSame(
            ['anonymousStatistics' => ['send' => false, 'instanceId' => '25ffebe4-3fdb-484b-bbeb-9725bc31d397', 'collector' => 'http://127.0.0.1:8080']],
            include $php->path()
        );
    }

    public function testOptInGeneratesARandomV4IdOnceAndOptOutKeepsIt(): void
    {
        $client = new Client($this->dir->file('config/anonymous_statistics.php'));
        $first = $client->optIn('https://stats.example.org');
        self::assertTrue($first->send);
        self::assertMatchesRegularExpression('/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/', (string) $first->instanceId);
        self::assertTrue($client->isOptedIn());
        self::assertSame($first->instanceId, $client->optIn()->instanceId, 'a later opt-in keeps the id');
        self::assertSame('https://stats.example.org', $client->optInState()->collector);
        $out = $client->optOut();
        self::assertFalse($out->send);
        self::assertSame($first->instanceId, $out->instanceId);
        self::assertFalse($client->isOptedIn());
        self::assertNotSame($first->instanceId, (new Client($this->dir->file('other.json')))->optIn()->instanceId);
    }

    public function testReadsAHandWrittenPhpFileWithoutRunningIt(): void
    {
        $path = $this->dir->file('app.php');
        file_put_contents($path, <<<'PHP'
            <?php
            // 'send' => true would be a comment
            throw new \Exception('never run');
            $config = [
                'passbolt' => [
                    'anonymousStatistics' => [
                        "send" => FALSE,
                        'instance_id' => "D3B1A0F2-5C4E-4B7A-9F1E-2A6C8D9E0F11",
                    ],
                ],
            ];
            PHP);
        $state = (new OptInFile($path))->load();
        self::assertFalse($state->send);
        self::assertSame('d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11', $state->instanceId);

        file_put_contents($path, "<?php return ['anonymousStatistics' => ['send' => true]];");
        self::assertTrue((new OptInFile($path))->load()->send);
        self::assertNull((new OptInFile($path))->load()->instanceId);
    }

    /**
     * @return iterable<string, array{0: string, 1: string}>
     */
    public static function invalidFiles(): iterable
    {
        yield 'a typo cannot turn sending on' => ['c.json', '{"sned": true}'];
        yield 'send must be a boolean' => ['c.json', '{"send": "yes"}'];
        yield 'not an object' => ['c.json', '[true]'];
        yield 'not JSON' => ['c.json', 'send=true'];
        yield 'a bad id' => ['c.json', '{"send": true, "instance_id": "x"}'];
        yield 'PHP send must be a boolean' => ['c.php', "<?php return ['send' => 'yes'];"];
        yield 'PHP id must be a UUID' => ['c.php', "<?php return ['send' => true, 'instanceId' => '1234'];"];
    }

    /**
     * @dataProvider invalidFiles
     */
    public function testInvalidFilesAreRefusedAndMeanDoNotSend(string $name, string $text): void
    {
        $path = $this->dir->file($name);
        file_put_contents($path, $text);
        self::assertFalse((new Client($path))->isOptedIn());
        $this->expectException(OptInException::class);
        (new OptInFile($path))->load();
    }

    public function testTheReferenceClientsOtherUuidSpellingsAreReadFromJson(): void
    {
        $path = $this->dir->file('c.json');
        file_put_contents($path, '{"send": true, "instance_id": "D3B1A0F25C4E4B7A9F1E2A6C8D9E0F11", "collector": null}');
        self::assertSame('d3b1a0f2-5c4e-4b7a-9f1e-2a6c8d9e0f11', (new OptInFile($path))->load()->instanceId);
    }

    public function testWritesAreAtomicPrivateAndKeepPermissions(): void
    {
        $path = $this->dir->file('etc/anonymous_statistics.php');
        $file = new OptInFile($path);
        $file->save((new OptIn())->optedIn());
        self::assertSame(0600, fileperms($path) & 0777, 'a new file is its owner\'s only');
        self::assertSame(['anonymous_statistics.php'], array_values(array_diff(scandir(dirname($path)) ?: [], ['.', '..'])), 'no temporary file is left');

        chmod($path, 0640);
        $inode = fileinode($path);
        $file->save($file->load()->optedOut());
        clearstatcache();
        self::assertSame(0640, fileperms($path) & 0777, 'an existing file keeps its permissions');
        self::assertNotSame($inode, fileinode($path), 'the file is replaced by a rename, not rewritten in place');
        self::assertSame(['anonymous_statistics.php'], array_values(array_diff(scandir(dirname($path)) ?: [], ['.', '..'])));
    }

    public function testAFailedWriteThrowsAndLeavesNoTemporaryFile(): void
    {
        // A non-empty directory where the file should be: the rename fails.
        $path = $this->dir->file('etc/c.json');
        mkdir($path, 0700, true);
        touch($path . '/keep');
        try {
            (new OptInFile($path))->save((new OptIn())->optedIn());
            self::fail('the write should fail');
        } catch (OptInException $e) {
            self::assertStringContainsString('cannot write', $e->getMessage());
        }
        self::assertSame(['c.json'], array_values(array_diff(scandir(dirname($path)) ?: [], ['.', '..'])));
        self::assertFalse((new Client($path))->isOptedIn());
    }
}
