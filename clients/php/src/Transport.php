<?php

declare(strict_types=1);

namespace Anonstats\Client;

/**
 * One HTTP exchange with the collector, with no retry of its own (the
 * {@see Collector} retries). {@see CurlTransport} is the implementation;
 * tests or host applications may provide another.
 */
interface Transport
{
    /**
     * Sends one request and returns the answer, whatever its status.
     *
     * @param string      $method         GET or POST (any other is sent as a custom method)
     * @param string      $url            the full URL
     * @param string|null $body           JSON body (POST), sent as is
     * @param float       $connectTimeout seconds allowed to connect
     * @param float       $timeout        seconds allowed for the whole exchange
     *
     * @throws TransportException when there is no answer
     */
    public function request(string $method, string $url, ?string $body, float $connectTimeout, float $timeout): Response;
}
