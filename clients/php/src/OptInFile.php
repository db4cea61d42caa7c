<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * The opt-in file, read and written exactly as `anonstats send --config`
 * reads and writes it. Its format follows its name:
 *
 * - a name ending in `.php` (passbolt's `app/tmp/config/anonymous_statistics.php`):
 *   `return ['anonymousStatistics' => ['send' => true, 'instanceId' => '…', 'collector' => '…']];`
 *   The file is never executed (nor cached by OPcache): only the entries
 *   `'send'`, `'instanceId'` (or `'instance_id'`) and `'collector'` are
 *   read, wherever they are nested; anything else is ignored.
 * - any other name: JSON, `{"send": true, "instance_id": "…", "collector": "…"}`,
 *   where any other key makes the file invalid.
 *
 * A missing file means "not opted in".
 */
final class OptInFile
{
    /**
     * @param string $path where the file is (it need not exist yet)
     */
    public function __construct(private readonly string $path)
    {
    }

    /**
     * The file's path.
     */
    public function path(): string
    {
        return $this->path;
    }

    /**
     * Reads the file. A missing file is the default: not opted in.
     *
     * @throws OptInException when the file cannot be read or is not a valid opt-in file
     */
    public function load(): OptIn
    {
        clearstatcache(true, $this->path);
        if (!file_exists($this->path)) {
            return new OptIn();
        }
        $text = @file_get_contents($this->path);
        if ($text === false) {
            throw new OptInException("cannot read {$this->path}: " . self::lastPhpError());
        }
        try {
            return $this->isPhp() ? self::parsePhp($text) : self::parseJson($text);
        } catch (OptInException $e) {
            throw new OptInException("{$this->path} is not a valid opt-in file: {$e->getMessage()}", 0, $e);
        }
    }

    /**
     * Writes the file, replacing it in one step: a temporary file in the
     * same directory, flushed to disk, then renamed over the old one (a
     * crash leaves the old or the new file, never half of one). A new file
     * is readable by its owner only, since the instance id is what lets its
     * holder erase the install's data; an existing file keeps its
     * permissions. Missing directories are created.
     *
     * @throws OptInException when the file cannot be written
     */
    public function save(OptIn $optIn): void
    {
        $text = $this->isPhp() ? self::toPhp($optIn) : self::toJson($optIn);
        $dir = dirname($this->path);
        if (!is_dir($dir) && !@mkdir($dir, 0777, true) && !is_dir($dir)) {
            throw new OptInException("cannot write {$this->path}: " . self::lastPhpError());
        }
        $tmp = null;
        try {
            // Unique per process and call, so that two writers never share one.
            $tmp = $dir . DIRECTORY_SEPARATOR . '.' . basename($this->path) . '.' . getmypid() . '.' . bin2hex(random_bytes(4)) . '.tmp';
            $old = umask(0077);
            try {
                $handle = @fopen($tmp, 'wb');
            } finally {
                umask($old);
            }
            if ($handle === false) {
                throw new OptInException("cannot write {$this->path}: " . self::lastPhpError());
            }
            try {
                $written = @fwrite($handle, $text);
                if ($written !== strlen($text) || !@fflush($handle) || !@fsync($handle)) {
                    throw new OptInException("cannot write {$this->path}: " . self::lastPhpError());
                }
            } finally {
                fclose($handle);
            }
            @chmod($tmp, 0600);
            clearstatcache(true, $this->path);
            if (file_exists($this->path)) {
                $perms = @fileperms($this->path);
                if ($perms !== false) {
                    @chmod($tmp, $perms & 0777);
                }
            }
            if (!@rename($tmp, $this->path)) {
                throw new OptInException("cannot write {$this->path}: " . self::lastPhpError());
            }
        } catch (\Throwable $e) {
            if ($tmp !== null) {
                @unlink($tmp);
            }
            throw $e instanceof OptInException ? $e : new OptInException("cannot write {$this->path}: {$e->getMessage()}", 0, $e);
        }
        if (function_exists('opcache_invalidate')) {
            // The host application may `include` the PHP form itself.
            @opcache_invalidate($this->path, true);
        }
    }

    private function isPhp(): bool
    {
        return strtolower(pathinfo($this->path, PATHINFO_EXTENSION)) === 'php';
    }

    private static function lastPhpError(): string
    {
        return error_get_last()['message'] ?? 'unknown error';
    }

    /**
     * The JSON form: `send` (boolean, default false), `instance_id` and
     * `collector` (strings, optional), nothing else.
     */
    private static function parseJson(string $text): OptIn
    {
        try {
            $data = json_decode($text, false, 512, JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new OptInException($e->getMessage());
        }
        if (!$data instanceof \stdClass) {
            throw new OptInException('expected a JSON object');
        }
        $send = false;
        $instanceId = null;
        $collector = null;
        foreach (get_object_vars($data) as $key => $value) {
            switch ($key) {
                case 'send':
                    if (!is_bool($value)) {
                        throw new OptInException('"send" must be true or false');
                    }
                    $send = $value;
                    break;
                case 'instance_id':
                    if ($value !== null) {
                        $instanceId = is_string($value) ? self::lenientUuid($value) : null;
                        if ($instanceId === null) {
                            throw new OptInException('"instance_id" must be a UUID');
                        }
                    }
                    break;
                case 'collector':
                    if ($value !== null && !is_string($value)) {
                        throw new OptInException('"collector" must be a string');
                    }
                    $collector = $value;
                    break;
                default:
                    throw new OptInException("unknown field \"{$key}\", expected one of \"send\", \"instance_id\", \"collector\"");
            }
        }

        return new OptIn($send, $instanceId, $collector);
    }

    /**
     * The spellings of a UUID the reference client accepts in its JSON file:
     * hyphenated, 32 hex digits, `urn:uuid:…` or braced.
     */
    private static function lenientUuid(string $text): ?string
    {
        $t = strtolower($text);
        if (str_starts_with($t, 'urn:uuid:')) {
            $t = substr($t, 9);
        } elseif (str_starts_with($t, '{') && str_ends_with($t, '}')) {
            $t = substr($t, 1, -1);
        }
        if (preg_match('/^[0-9a-f]{32}$/', $t) === 1) {
            $t = substr($t, 0, 8) . '-' . substr($t, 8, 4) . '-' . substr($t, 12, 4) . '-'
                . substr($t, 16, 4) . '-' . substr($t, 20);
        }

        return Uuid::normalize($t);
    }

    private static function toJson(OptIn $o): string
    {
        $data = ['send' => $o->send];
        if ($o->instanceId !== null) {
            $data['instance_id'] = $o->instanceId;
        }
        if ($o->collector !== null) {
            $data['collector'] = $o->collector;
        }

        return Json::pretty($data) . "\n";
    }

    private static function toPhp(OptIn $o): string
    {
        $out = "<?php\n// Anonymous usage statistics: set 'send' to false to stop sending reports.\n"
            . "return [\n    'anonymousStatistics' => [\n";
        $out .= "        'send' => " . ($o->send ? 'true' : 'false') . ",\n";
        if ($o->instanceId !== null) {
            $out .= "        'instanceId' => '{$o->instanceId}',\n";
        }
        if ($o->collector !== null) {
            $out .= "        'collector' => '" . str_replace(['\\', "'"], ['\\\\', "\\'"], $o->collector) . "',\n";
        }

        return $out . "    ],\n];\n";
    }

    /**
     * Reads `'send' => true|false`, `'instanceId' => '…'` (or `instance_id`)
     * and `'collector' => '…'` from a PHP configuration array without
     * evaluating it, with the reference client's rules.
     */
    private static function parsePhp(string $text): OptIn
    {
        $send = false;
        $instanceId = null;
        $collector = null;
        foreach (self::phpEntries($text) as [$key, $value]) {
            switch ($key) {
                case 'send':
                    $send = match (strtolower($value)) {
                        'true', '1' => true,
                        'false', '0' => false,
                        default => throw new OptInException("'send' must be true or false, not {$value}"),
                    };
                    break;
                case 'instanceId':
                case 'instance_id':
                    if ($value !== '') {
                        $instanceId = Uuid::normalize($value);
                        if ($instanceId === null) {
                            throw new OptInException("'{$key}' must be a UUID");
                        }
                    }
                    break;
                case 'collector':
                    $collector = $value === '' ? null : $value;
                    break;
            }
        }

        return new OptIn($send, $instanceId, $collector);
    }

    /**
     * `'key' => value` pairs of a PHP array literal, values unquoted.
     *
     * @return list<array{0: string, 1: string}>
     */
    private static function phpEntries(string $text): array
    {
        $lines = preg_split('/\r?\n/', $text) ?: [];
        foreach ($lines as $i => $line) {
            $t = ltrim($line);
            if (str_starts_with($t, '//') || str_starts_with($t, '#') || str_starts_with($t, '*') || str_starts_with($t, '/*')) {
                $lines[$i] = '';
            }
        }
        $text = implode("\n", $lines);
        $out = [];
        $offset = 0;
        while (($arrow = strpos($text, '=>', $offset)) !== false) {
            $before = rtrim(substr($text, $offset, $arrow - $offset));
            $after = ltrim(substr($text, $arrow + 2));
            $offset = $arrow + 2;
            $key = self::trailingQuoted($before);
            if ($key === null) {
                continue;
            }
            $first = $after[0] ?? '';
            if ($first === "'" || $first === '"') {
                $value = self::leadingQuoted($after, $first);
                if ($value === null) {
                    continue;
                }
            } else {
                $value = preg_split('/[,\])\s]/', $after, 2)[0] ?? '';
            }
            $out[] = [$key, $value];
        }

        return $out;
    }

    private static function trailingQuoted(string $s): ?string
    {
        $q = substr($s, -1);
        if ($q !== "'" && $q !== '"') {
            return null;
        }
        $inner = substr($s, 0, -1);
        $start = strrpos($inner, $q);

        return $start === false ? null : substr($inner, $start + 1);
    }

    private static function leadingQuoted(string $s, string $q): ?string
    {
        $out = '';
        $n = strlen($s);
        for ($i = 1; $i < $n; $i++) {
            $c = $s[$i];
            if ($c === '\\') {
                $i++;
                $out .= $s[$i] ?? '';
            } elseif ($c === $q) {
                return $out;
            } else {
                $out .= $c;
            }
        }

        return null;
    }
}
