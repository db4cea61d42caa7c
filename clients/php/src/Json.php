<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * JSON written byte for byte as the reference client writes it (Rust's
 * serde_json "pretty" form): two-space indentation, `"key": value`, no
 * escaped slashes or non-ASCII characters. Arrays are always written as
 * objects, in their order; there are no lists in reports or opt-in files.
 *
 * @internal
 */
final class Json
{
    private const STRING_FLAGS = JSON_UNESCAPED_SLASHES
        | JSON_UNESCAPED_UNICODE
        | JSON_UNESCAPED_LINE_TERMINATORS
        | JSON_THROW_ON_ERROR;

    private function __construct()
    {
    }

    /**
     * Indented JSON of an object given as an ordered array.
     *
     * @param array<array-key, mixed> $object
     *
     * @throws \JsonException on strings that are not valid UTF-8
     */
    public static function pretty(array $object): string
    {
        return self::value($object, '');
    }

    private static function value(mixed $value, string $indent): string
    {
        if (is_array($value)) {
            if ($value === []) {
                return '{}';
            }
            $inner = $indent . '  ';
            $lines = [];
            foreach ($value as $key => $item) {
                $lines[] = $inner . self::string((string) $key) . ': ' . self::value($item, $inner);
            }

            return "{\n" . implode(",\n", $lines) . "\n" . $indent . '}';
        }
        if (is_string($value)) {
            return self::string($value);
        }
        if (is_bool($value)) {
            return $value ? 'true' : 'false';
        }
        if (is_int($value)) {
            return (string) $value;
        }
        if ($value === null) {
            return 'null';
        }
        throw new \InvalidArgumentException('unsupported JSON value of type ' . get_debug_type($value));
    }

    private static function string(string $s): string
    {
        return json_encode($s, self::STRING_FLAGS);
    }
}
