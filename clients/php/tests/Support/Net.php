<?php

declare(strict_types=1);

namespace Anonstats\Client\Tests\Support;

/**
 * Ports and raw HTTP for the tests.
 */
final class Net
{
    /**
     * A port nothing listens on now: bound to port 0, then closed.
     */
    public static function freePort(): int
    {
        $server = stream_socket_server('tcp://127.0.0.1:0', $errno, $error);
        if ($server === false) {
            throw new \RuntimeException("cannot bind: {$error}");
        }
        $name = (string) stream_socket_get_name($server, false);
        fclose($server);

        return (int) substr($name, strrpos($name, ':') + 1);
    }

    /**
     * One plain HTTP request, no retries.
     *
     * @return array{0: int, 1: string} status and body
     */
    public static function http(string $method, string $url, ?string $body = null): array
    {
        $ch = curl_init($url);
        $headers = ['Accept: application/json', 'Expect:'];
        if ($body !== null) {
            $headers[] = 'Content-Type: application/json';
            curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
        }
        curl_setopt_array($ch, [
            CURLOPT_CUSTOMREQUEST => $method,
            CURLOPT_HTTPHEADER => $headers,
            CURLOPT_RETURNTRANSFER => true,
            CURLOPT_TIMEOUT => 10,
        ]);
        $answer = curl_exec($ch);
        if ($answer === false) {
            return [0, curl_error($ch)];
        }

        return [(int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE), (string) $answer];
    }

    /**
     * Waits until something accepts connections on the port.
     */
    public static function waitForPort(int $port, float $seconds): bool
    {
        $until = microtime(true) + $seconds;
        while (microtime(true) < $until) {
            $s = @stream_socket_client("tcp://127.0.0.1:{$port}", $errno, $error, 0.2);
            if ($s !== false) {
                fclose($s);

                return true;
            }
            usleep(50_000);
        }

        return false;
    }
}
