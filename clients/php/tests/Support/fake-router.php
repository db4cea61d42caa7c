<?php

declare(strict_types=1);

// Router of the fake collector (`php -S`). FAKE_DIR holds script.json, the
// answers to give in order (the last one repeats), and requests.jsonl, one
// line per request received. An answer is {"status": N, "retry_after":
// "S", "body": "..."} or {"proxy": true}, which forwards the request to
// FAKE_UPSTREAM and relays its answer.

$dir = (string) getenv('FAKE_DIR');
$script = json_decode((string) file_get_contents($dir . '/script.json'), true);
$body = (string) file_get_contents('php://input');
$log = $dir . '/requests.jsonl';
$seen = is_file($log) ? count(file($log)) : 0;
file_put_contents($log, json_encode([
    'method' => $_SERVER['REQUEST_METHOD'],
    'uri' => $_SERVER['REQUEST_URI'],
    'content_type' => $_SERVER['CONTENT_TYPE'] ?? null,
    'user_agent' => $_SERVER['HTTP_USER_AGENT'] ?? null,
    'body' => $body,
    'at' => microtime(true),
]) . "\n", FILE_APPEND | LOCK_EX);

$answer = $script[min($seen, count($script) - 1)];
if (!empty($answer['proxy'])) {
    $ch = curl_init((string) getenv('FAKE_UPSTREAM') . $_SERVER['REQUEST_URI']);
    $headers = ['Accept: application/json', 'Expect:'];
    if ($body !== '') {
        $headers[] = 'Content-Type: ' . ($_SERVER['CONTENT_TYPE'] ?? 'application/json');
        curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
    }
    curl_setopt_array($ch, [
        CURLOPT_CUSTOMREQUEST => $_SERVER['REQUEST_METHOD'],
        CURLOPT_HTTPHEADER => $headers,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_TIMEOUT => 10,
    ]);
    $relayed = curl_exec($ch);
    http_response_code($relayed === false ? 502 : (int) curl_getinfo($ch, CURLINFO_RESPONSE_CODE));
    header('Content-Type: application/json');
    echo $relayed === false ? '{}' : $relayed;

    return true;
}
http_response_code((int) $answer['status']);
if (isset($answer['retry_after'])) {
    header('Retry-After: ' . $answer['retry_after']);
}
header('Content-Type: ' . ($answer['content_type'] ?? 'application/json'));
echo $answer['body'] ?? '{}';

return true;
