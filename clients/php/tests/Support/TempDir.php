<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests\Support;

/**
 * A fresh temporary directory, removed with everything in it.
 */
final class TempDir
{
    public readonly string $path;

    public function __construct()
    {
        $base = sys_get_temp_dir() . DIRECTORY_SEPARATOR . 'anonstats-php-' . bin2hex(random_bytes(6));
        if (!mkdir($base, 0700)) {
            throw new \RuntimeException("cannot create {$base}");
        }
        $this->path = $base;
    }

    public function file(string $name): string
    {
        return $this->path . DIRECTORY_SEPARATOR . $name;
    }

    public function remove(): void
    {
        self::removeTree($this->path);
    }

    private static function removeTree(string $path): void
    {
        if (is_dir($path) && !is_link($path)) {
            foreach (scandir($path) ?: [] as $entry) {
                if ($entry !== '.' && $entry !== '..') {
                    self::removeTree($path . DIRECTORY_SEPARATOR . $entry);
                }
            }
            @rmdir($path);
        } else {
            @unlink($path);
        }
    }
}
