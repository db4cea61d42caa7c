<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * HTTP over the curl extension: no redirects (a report goes only to the
 * collector the administrator agreed to), HTTP and HTTPS only, a user agent
 * without any version, and answers of at most 1 MiB.
 */
final class CurlTransport implements Transport
{
    /** Largest answer body read from a collector. */
    private const MAX_ANSWER_BYTES = 1 << 20;

    /**
     * {@inheritDoc}
     */
    public function request(string $method, string $url, ?string $body, float $connectTimeout, float $timeout): Response
    {
        $ch = curl_init();
        if ($ch === false) {
            throw new TransportException('cannot initialise curl', false);
        }
        $answer = '';
        $tooLarge = false;
        $retryAfter = null;
        $headers = ['Accept: application/json', 'Expect:'];
        $options = [
            CURLOPT_URL => $url,
            CURLOPT_FOLLOWLOCATION => false,
            CURLOPT_PROTOCOLS => CURLPROTO_HTTP | CURLPROTO_HTTPS,
            CURLOPT_USERAGENT => 'anonstats-client',
            // Lets timeouts below one second work, and keeps curl away from
            // the host application's signal handlers.
            CURLOPT_NOSIGNAL => true,
            CURLOPT_CONNECTTIMEOUT_MS => max(1, (int) ceil($connectTimeout * 1000)),
            CURLOPT_TIMEOUT_MS => max(1, (int) ceil($timeout * 1000)),
            CURLOPT_WRITEFUNCTION => static function ($ch, string $chunk) use (&$answer, &$tooLarge): int {
                if (strlen($answer) + strlen($chunk) > self::MAX_ANSWER_BYTES) {
                    $tooLarge = true;

                    return 0;
                }
                $answer .= $chunk;

                return strlen($chunk);
            },
            CURLOPT_HEADERFUNCTION => static function ($ch, string $line) use (&$retryAfter): int {
                if (stripos($line, 'retry-after:') === 0) {
                    $retryAfter = trim(substr($line, strlen('retry-after:')));
                }

                return strlen($line);
            },
        ];
        if ($method === 'POST') {
            $options[CURLOPT_POST] = true;
            $options[CURLOPT_POSTFIELDS] = $body ?? '';
            $headers[] = 'Content-Type: application/json';
        } elseif ($method !== 'GET') {
            $options[CURLOPT_CUSTOMREQUEST] = $method;
        }
        $options[CURLOPT_HTTPHEADER] = $headers;
        if (!curl_setopt_array($ch, $options)) {
            throw new TransportException('cannot set up the request: ' . curl_error($ch), false);
        }
        $ok = curl_exec($ch);
        if ($ok === false) {
            $errno = curl_errno($ch);
            $error = $tooLarge ? 'the answer is larger than 1 MiB' : curl_error($ch);
            // A URL curl cannot use will not work on a second attempt.
            $permanent = in_array($errno, [CURLE_UNSUPPORTED_PROTOCOL, CURLE_URL_MALFORMAT], true);
            throw new TransportException($error !== '' ? $error : "curl error {$errno}", !$permanent);
        }
        $status = (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE);

        return new Response($status, $answer, $retryAfter);
    }
}
