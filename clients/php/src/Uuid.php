<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * Random (version 4) UUIDs, and the one spelling the collector accepts.
 */
final class Uuid
{
    private const PATTERN = '/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/';

    private function __construct()
    {
    }

    /**
     * A new random UUID (version 4) from the operating system's generator,
     * in lower-case hyphenated form. It says nothing about the machine.
     *
     * @throws \Exception when no source of randomness is available
     */
    public static function v4(): string
    {
        $bytes = random_bytes(16);
        $bytes[6] = chr((ord($bytes[6]) & 0x0f) | 0x40);
        $bytes[8] = chr((ord($bytes[8]) & 0x3f) | 0x80);
        $hex = bin2hex($bytes);

        return sprintf(
            '%s-%s-%s-%s-%s',
            substr($hex, 0, 8),
            substr($hex, 8, 4),
            substr($hex, 12, 4),
            substr($hex, 16, 4),
            substr($hex, 20, 12)
        );
    }

    /**
     * The lower-case form of a hyphenated UUID (any case), or null when the
     * text is not one. Like the collector, only the 36-character hyphenated
     * form is accepted, so that one id has one spelling.
     */
    public static function normalize(string $text): ?string
    {
        $lower = strtolower($text);

        return preg_match(self::PATTERN, $lower) === 1 ? $lower : null;
    }
}
